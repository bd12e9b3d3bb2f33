//! croissant.json: it describes every artifact with its true SHA-256, carries the class
//! names and splits, does not change between builds, and verify holds the files to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaokore::pack;
use kaokore::progress::Progress;
use kaokore::verify::verify;
use serde_json::Value;

use crate::support::inline::*;

const S: u32 = 32;

fn build(inline: &InlineDataset, formats: &str, jobs: usize, out: &Path) {
    let source = MapSource::new(inline.files.clone());
    pack::pack(
        &inline.dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, jobs, formats),
        out,
        &Progress::hidden("pack", 0),
    )
    .expect("pack succeeds");
}

fn croissant(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("croissant.json")).unwrap()).unwrap()
}

/// SHA256SUMS as path -> hash.
fn sums(out: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(out.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| (l[66..].to_string(), l[..64].to_string()))
        .collect()
}

fn record_set<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["recordSet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["@id"] == id)
        .unwrap_or_else(|| panic!("no record set {id}"))
}

fn field<'a>(set: &'a Value, id: &str) -> &'a Value {
    set["field"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["@id"] == id)
        .unwrap_or_else(|| panic!("no field {id}"))
}

#[test]
fn croissant_lists_every_artifact_with_its_sha256() {
    let inline = inline_dataset(30, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&inline, "idx,npz,parquet,images", 2, &out);
    let doc = croissant(&out);
    let listed = sums(&out);
    assert!(listed.contains_key("croissant.json"));

    // Every FileObject is an artifact, with the SHA-256 and size of the file itself.
    let mut objects = BTreeMap::new();
    for f in doc["distribution"].as_array().unwrap() {
        if f["@type"] != "cr:FileObject" {
            continue;
        }
        let path = f["contentUrl"].as_str().unwrap().to_string();
        let bytes = std::fs::read(out.join(&path)).unwrap();
        assert_eq!(f["sha256"], pack::sha256_hex(&bytes), "{path}");
        assert_eq!(f["contentSize"], format!("{} B", bytes.len()), "{path}");
        assert_eq!(f["@id"], path.as_str());
        objects.insert(path, f["encodingFormat"].as_str().unwrap().to_string());
    }
    // ... and every artifact but itself, SHA256SUMS and the per-image files has one.
    let expected: Vec<&String> = listed
        .keys()
        .filter(|p| *p != "croissant.json" && !p.starts_with("images_32/"))
        .collect();
    assert_eq!(objects.keys().collect::<Vec<_>>(), expected);
    assert!(
        listed
            .keys()
            .filter(|p| p.starts_with("images_32/"))
            .count()
            > 10
    );
    assert_eq!(
        objects["parquet/train-00000-of-00001.parquet"],
        "application/x-parquet"
    );
    assert_eq!(
        objects["idx/kaokore-dev-images-idx4-ubyte.gz"],
        "application/gzip"
    );
    assert_eq!(objects["labels.csv"], "text/csv");
    let sets: Vec<&str> = doc["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["@type"] == "cr:FileSet")
        .map(|f| f["includes"].as_str().unwrap())
        .collect();
    assert_eq!(sets, ["parquet/*.parquet", "images_32/*.jpg"]);

    // The dataset: licence, citation with the DOI, creators, providers, the request.
    assert_eq!(doc["conformsTo"], "http://mlcommons.org/croissant/1.1");
    assert_eq!(doc["license"], kaokore::LICENSE_URL);
    assert_eq!(doc["version"], "1.0");
    let cite = doc["citeAs"].as_str().unwrap();
    assert!(cite.contains("@inproceedings{tian2020kaokore") && cite.contains(kaokore::DOI));
    assert!(
        doc["description"]
            .as_str()
            .unwrap()
            .contains(kaokore::REDISTRIBUTION_REQUEST)
    );
    assert_eq!(doc["usageInfo"], kaokore::REDISTRIBUTION_REQUEST);
    let providers: Vec<&str> = doc["provider"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = kaokore::metadata::Provider::ALL
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(providers, all);
    assert!(doc["creator"].as_array().unwrap().len() > 1);

    // Class names in enumerations, referenced by the label fields; the splits.
    for (id, names) in [
        ("gender", &inline.dataset.class_names.gender),
        ("status", &inline.dataset.class_names.status),
    ] {
        let set = record_set(&doc, id);
        assert_eq!(set["dataType"], "sc:Enumeration");
        let got: Vec<(u64, &str)> = set["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d[format!("{id}/index")].as_u64().unwrap(),
                    d[format!("{id}/name")].as_str().unwrap(),
                )
            })
            .collect();
        let want: Vec<(u64, &str)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64, n.as_str()))
            .collect();
        assert_eq!(got, want);
        for rs in ["images", "labels"] {
            let f = field(record_set(&doc, rs), &format!("{rs}/{id}"));
            assert_eq!(f["references"]["field"]["@id"], format!("{id}/index"));
        }
    }
    let splits = record_set(&doc, "splits");
    assert_eq!(splits["dataType"], "cr:Split");
    let data = splits["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["splits/name"], "dev");
    assert_eq!(data[1]["splits/url"], "cr:ValidationSplit");
    let images = record_set(&doc, "images");
    assert_eq!(
        field(images, "images/image")["source"]["transform"]["jsonPath"],
        "bytes"
    );
    // One field per Parquet column, plus the split.
    assert_eq!(
        images["field"].as_array().unwrap().len(),
        pack::arrow_schema().fields().len() + 1
    );
}

#[test]
fn croissant_follows_the_formats() {
    let inline = inline_dataset(12, S, &[Kind::RgbJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&inline, "npz", 1, &out);
    let doc = croissant(&out);
    let ids: Vec<&str> = doc["recordSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["@id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["splits", "gender", "status", "labels"]);
    assert!(
        !doc["distribution"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["@type"] == "cr:FileSet")
    );
    assert!(verify(&out).unwrap().is_ok());
}

#[test]
fn croissant_is_the_same_across_builds_jobs_and_directories() {
    let inline = inline_dataset(24, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let a: PathBuf = dir.path().join("a");
    let b: PathBuf = dir.path().join("somewhere-else");
    build(&inline, "idx,npz,parquet", 1, &a);
    build(&inline, "idx,npz,parquet", 3, &b);
    let first = std::fs::read(a.join("croissant.json")).unwrap();
    assert_eq!(first, std::fs::read(b.join("croissant.json")).unwrap());
    // A rebuild in place replaces it with the same bytes.
    build(&inline, "idx,npz,parquet", 2, &a);
    assert_eq!(first, std::fs::read(a.join("croissant.json")).unwrap());
    let text = String::from_utf8(first).unwrap();
    assert!(!text.contains(dir.path().to_str().unwrap()));
    assert!(!text.contains("somewhere-else"));
}

#[test]
fn verify_holds_the_files_to_croissant() {
    let inline = inline_dataset(16, S, &[Kind::RgbJpeg, Kind::GrayJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&inline, "idx,npz,parquet", 2, &out);
    assert!(verify(&out).unwrap().is_ok());

    // A changed card with its SHA256SUMS line recomputed: croissant.json still knows.
    let card = out.join("README.md");
    let mut text = std::fs::read_to_string(&card).unwrap();
    text.push_str("\nedited\n");
    std::fs::write(&card, text).unwrap();
    rehash(&out, "README.md");
    let problems: Vec<String> = verify(&out)
        .unwrap()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("README.md: SHA-256 is ")
            && problems[0].contains("croissant.json says"),
        "{problems:?}"
    );

    // A FileObject dropped from croissant.json (SHA256SUMS updated): not described.
    let mut doc = croissant(&out);
    doc["distribution"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["contentUrl"] != "labels.csv" && f["contentUrl"] != "README.md");
    std::fs::write(out.join("croissant.json"), doc.to_string()).unwrap();
    rehash(&out, "croissant.json");
    let problems: Vec<String> = verify(&out)
        .unwrap()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        problems,
        [
            "README.md: not described in croissant.json",
            "labels.csv: not described in croissant.json"
        ]
    );
}

/// Recompute one line of SHA256SUMS, as someone covering their tracks would.
fn rehash(out: &Path, relative: &str) {
    let hash = pack::sha256_hex(&std::fs::read(out.join(relative)).unwrap());
    let text: String = std::fs::read_to_string(out.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            if &l[66..] == relative {
                format!("{hash}  {relative}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(out.join("SHA256SUMS"), text).unwrap();
}
