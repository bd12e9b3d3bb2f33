//! What kaokore's fuzz targets share: the metadata a target completes with the fuzzer's
//! file, the invariants every parsed dataset keeps, and a small valid build (`fuzz/base/`,
//! made by `scripts/fuzz.sh --seeds`) in which a target replaces one file with the
//! fuzzer's bytes before running `kaokore verify` over the whole build. Verify must report
//! a changed artifact as a problem, never panic, hang or accept it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kaokore::metadata::{Dataset, DatasetVersion, MetadataFiles};

/// Upstream's class names, the same in every version.
pub const CLASS_NAMES_EN: &str = "gender\tstatus\n2\t4\n\ngender\n\t0\tmale\n\t1\tfemale\n\nstatus\n\t0\tnoble\n\t1\twarrior\n\t2\tincarnation\n\t3\tcommoner\n";
pub const CLASS_NAMES_JA: &str = "性別\t身分\n2\t4\n\n性別\n\t0\t男\n\t1\t女\n\n身分\n\t0\t貴族\n\t1\t武士\n\t2\t化身\n\t3\t庶民\n";
/// Four real URLs (ids 0-3), one per host form, and a blank line (id 4).
pub const URLS: &str = "https://rmda.kulib.kyoto-u.ac.jp/iiif/RB00013604/RB00013604_00003_0.ptif/1842,876,107,107/256,256/0/default.jpg\n\
http://codh.rois.ac.jp/iiif/iiif-curation-viewer/collection/200014778/00000001/0,0,100,100/256,/0/default.jpg\n\
https://iiif.lib.keio.ac.jp/iipsrv/NRE/110X-445-3-3/tif/3_004.tif/561,446,120,120/!200,200/0/default.jpg\n\
http://iiif.lib.keio.ac.jp/iipsrv/NRE/110X-445-3-3/tif/3_004.tif/915,430,98,98/!200,200/0/default.jpg\n\
\n";
pub const LABELS: &str = "image,gender,status,set\n00000000.jpg,0,0,train\n00000001.jpg,1,3,dev\n00000002.jpg,0,2,test\n";
pub const TAGS: &str =
    "00000000.jpg:原典=源氏物語;向き=右;制作年=from 1650;制作年=to 1700;タグ=女房;タグ=\n";

/// Metadata files with the valid ones above, for a target to replace one of.
pub fn files() -> MetadataFiles {
    MetadataFiles {
        origin: "fuzz".into(),
        urls: URLS.into(),
        labels: LABELS.into(),
        original_tags: TAGS.into(),
        class_names_en: CLASS_NAMES_EN.into(),
        class_names_ja: CLASS_NAMES_JA.into(),
    }
}

/// Parse `files`; on success, check what the rest of kaokore relies on: one record per
/// urls.txt line with its own id, labels only on lines with an id in range, classes in
/// range, and the row order naming each labelled image once.
pub fn parse_and_check(files: MetadataFiles) {
    let Ok(ds) = Dataset::parse(DatasetVersion::V1_3, files) else {
        return;
    };
    for (i, r) in ds.records.iter().enumerate() {
        assert_eq!(r.id.0 as usize, i, "record {i} has id {}", r.id.0);
        if let Some(l) = &r.label {
            assert!((l.gender as usize) < ds.class_names.gender.len());
            assert!((l.status as usize) < ds.class_names.status.len());
        }
    }
    let mut seen = std::collections::HashSet::new();
    for id in &ds.labelled {
        assert!(
            (id.0 as usize) < ds.records.len(),
            "labelled id {} out of range",
            id.0
        );
        assert!(seen.insert(*id), "labelled id {} twice", id.0);
        assert!(ds.records[id.0 as usize].label.is_some());
    }
}

/// The checked-in valid build the verify targets start from.
pub fn base_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("base")
}

struct Scratch {
    dir: PathBuf,
    /// Every file of the base build, by relative path.
    originals: HashMap<String, Vec<u8>>,
    /// The files SHA256SUMS lists: a change to any of them must be reported.
    checksummed: Vec<String>,
}

/// A copy of the base build in `$KAOKORE_FUZZ_SCRATCH` (scripts/fuzz.sh sets it and
/// removes it afterwards), else in the system's temporary directory.
fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root = std::env::var_os("KAOKORE_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = root.join(format!("kaokore-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut originals = HashMap::new();
        copy_tree(&base_dir(), &dir, "", &mut originals);
        assert!(
            originals.contains_key("SHA256SUMS"),
            "{} holds no build: run scripts/fuzz.sh --seeds",
            base_dir().display()
        );
        let report = kaokore::verify::verify(&dir).expect("the base build is a directory");
        assert!(
            report.is_ok(),
            "the base build does not verify: {:?}",
            report.problems
        );
        let sums = String::from_utf8(originals["SHA256SUMS"].clone()).unwrap();
        let checksummed = sums
            .lines()
            .filter_map(|l| l.split_once("  ").map(|(_, f)| f.to_string()))
            .collect();
        Scratch {
            dir,
            originals,
            checksummed,
        }
    })
}

fn copy_tree(from: &Path, to: &Path, prefix: &str, files: &mut HashMap<String, Vec<u8>>) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let relative = format!("{prefix}{name}");
        if entry.file_type().unwrap().is_dir() {
            copy_tree(
                &entry.path(),
                &to.join(&name),
                &format!("{relative}/"),
                files,
            );
        } else {
            let bytes = std::fs::read(entry.path()).unwrap();
            std::fs::write(to.join(&name), &bytes).unwrap();
            files.insert(relative, bytes);
        }
    }
}

/// The first byte picks one of `candidates` (relative paths in the base build), the rest
/// replaces that file; then the whole build is verified and the file put back.
pub fn verify_with_replaced(candidates: &[&str], data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let s = scratch();
    let name = candidates[pick as usize % candidates.len()];
    let original = s
        .originals
        .get(name)
        .unwrap_or_else(|| panic!("the base build has no {name}"));
    let path = s.dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let report = kaokore::verify::verify(&s.dir).expect("the scratch build is a directory");
    std::fs::write(&path, original).unwrap();
    if bytes != original.as_slice() && s.checksummed.iter().any(|f| f == name) {
        assert!(
            !report.is_ok(),
            "{name} was changed and verify found no problem"
        );
    }
}
