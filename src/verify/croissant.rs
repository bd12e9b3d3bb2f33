//! croissant.json against the files: each FileObject names an artifact of the build with
//! its true SHA-256 (as SHA256SUMS' check computed it), and every artifact but the
//! per-image files (one FileSet stands for them) has one. A file changed together with
//! its SHA256SUMS line is caught here.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::path::Path;

use super::VerifyReport;
use super::expected::Expected;
use crate::layout::{CROISSANT, SHA256SUMS};
use crate::pack::read::{length, open_artifact};

/// croissant.json is about 1 KiB per file it describes.
const MAX_CROISSANT_BYTES: u64 = 16 << 20;

/// Check croissant.json's FileObjects against the files, whose SHA-256s `hashes` holds.
pub(super) fn check(
    dir: &Path,
    expected: &Expected,
    hashes: &HashMap<String, String>,
    report: &mut VerifyReport,
) {
    let name = CROISSANT;
    if !expected.files.contains(name) {
        return;
    }
    let doc = open_artifact(dir, name).and_then(|f| {
        if length(&f)? > MAX_CROISSANT_BYTES {
            return Err(format!("larger than {} MiB", MAX_CROISSANT_BYTES >> 20));
        }
        serde_json::from_reader::<_, serde_json::Value>(BufReader::new(f))
            .map_err(|e| format!("not JSON: {e}"))
    });
    let doc = match doc {
        Ok(doc) => doc,
        Err(e) => return report.problem(name, None, e),
    };
    let Some(distribution) = doc["distribution"].as_array() else {
        return report.problem(name, None, "has no distribution list");
    };
    let mut described = BTreeSet::new();
    for entry in distribution
        .iter()
        .filter(|e| e["@type"] == "cr:FileObject")
    {
        let (Some(path), Some(sha256)) = (entry["contentUrl"].as_str(), entry["sha256"].as_str())
        else {
            report.problem(name, None, "a FileObject has no contentUrl or sha256");
            continue;
        };
        if !expected.files.contains(path) || path == name || path == SHA256SUMS {
            report.problem(
                name,
                None,
                format!("describes {path}, not an artifact it can list"),
            );
            continue;
        }
        described.insert(path);
        if let Some(actual) = hashes.get(path).filter(|actual| *actual != sha256) {
            report.problem(
                path,
                None,
                format!("SHA-256 is {actual}, {name} says {sha256}"),
            );
        }
    }
    // Formats with a file per image describe them with one FileSet.
    let per_image = expected.per_image_dirs();
    for f in &expected.files {
        if f != name
            && f != SHA256SUMS
            && !per_image.iter().any(|p| f.starts_with(p))
            && !described.contains(f.as_str())
        {
            report.problem(f, None, format!("not described in {name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::sha256_hex;
    use crate::verify::sums::tests::expecting;
    use serde_json::json;

    fn file_object(path: &str, sha256: &str) -> serde_json::Value {
        json!({"@type": "cr:FileObject", "contentUrl": path, "sha256": sha256})
    }

    /// Check a croissant.json of `distribution` beside a.txt, b.txt and SHA256SUMS.
    fn problems(distribution: serde_json::Value) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let doc = json!({ "distribution": distribution });
        std::fs::write(dir.path().join(CROISSANT), doc.to_string()).unwrap();
        let expected = expecting(&[("a.txt", "a"), ("b.txt", "b"), (CROISSANT, "")]);
        let hashes: HashMap<String, String> = [("a.txt", "a"), ("b.txt", "b")]
            .into_iter()
            .map(|(f, c)| (f.to_string(), sha256_hex(c.as_bytes())))
            .collect();
        let mut report = VerifyReport::default();
        check(dir.path(), &expected, &hashes, &mut report);
        report.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_artifact_is_described_with_its_checksum() {
        let (a, b) = (sha256_hex(b"a"), sha256_hex(b"b"));
        let good = json!([file_object("a.txt", &a), file_object("b.txt", &b)]);
        assert_eq!(problems(good), Vec::<String>::new());
        let bad = json!([
            file_object("a.txt", &b),
            file_object("SHA256SUMS", &a),
            file_object("mine.txt", &a),
            {"@type": "cr:FileObject", "contentUrl": "b.txt"},
            {"@type": "cr:FileSet", "includes": "*.txt"},
        ]);
        assert_eq!(
            problems(bad),
            [
                format!("a.txt: SHA-256 is {a}, croissant.json says {b}"),
                "croissant.json: describes SHA256SUMS, not an artifact it can list".into(),
                "croissant.json: describes mine.txt, not an artifact it can list".into(),
                "croissant.json: a FileObject has no contentUrl or sha256".into(),
                "b.txt: not described in croissant.json".into(),
            ]
        );
        assert_eq!(
            problems(json!({})),
            ["croissant.json: has no distribution list"]
        );
    }
}
