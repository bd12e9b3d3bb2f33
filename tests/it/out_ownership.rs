//! Ownership of `--out`, through the binary: kaokore writes only into a new or empty
//! directory, one of its own builds, or the leftovers of a killed run; a rebuild replaces
//! or removes only what its previous build recorded, never through a symlink.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Output;

use kaokore::out::RECORD_FILE;

use crate::support::tree::snapshot;
use crate::support::{Run, path_arg, report, stderr};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `kaokore CMD ... --out OUT --formats FORMATS` of the first 40 images of v1.0 at size 16.
fn kaokore_out(run: &Run, cmd: &str, out: &Path, formats: &str) -> Output {
    run.kaokore(cmd)
        .args([
            "--quiet",
            "--dataset-version",
            "1.0",
            "--size",
            "16",
            "--jobs",
            "1",
        ])
        .args(["--formats", formats, "--metadata"])
        .arg(run.metadata(40))
        .arg("--cache")
        .arg(run.cache())
        .arg("--out")
        .arg(out)
        .output()
        .expect("run kaokore")
}

fn build_ok(run: &Run, out: &Path, formats: &str) {
    let o = kaokore_out(run, "build", out, formats);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
}

fn record_files(dir: &Path) -> Vec<String> {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(RECORD_FILE)).unwrap()).unwrap();
    record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// Issue 9, item 1: a directory whose SHA256SUMS kaokore did not write lost every file
/// the list named, through a symlinked folder too. It is now refused, untouched.
#[test]
fn a_foreign_sha256sums_is_refused_and_nothing_is_deleted() {
    let run = Run::new();
    build_ok(&run, &run.root.join("seed"), "npz"); // fills the cache, so pack has images

    let u = run.root.join("u");
    write(&u.join("notes.txt"), "x\n");
    write(&u.join("data/keep.csv"), "y\n");
    write(&u.join("README.md"), "my readme\n");
    write(&u.join("labels.csv"), "my labels\n");
    let sums = |names: &[&str], dir: &Path| -> String {
        names
            .iter()
            .map(|n| {
                let bytes = std::fs::read(dir.join(n)).unwrap();
                format!("{}  {n}\n", kaokore::pack::sha256_hex(&bytes))
            })
            .collect()
    };
    let listed = ["notes.txt", "data/keep.csv", "README.md", "labels.csv"];
    write(&u.join("SHA256SUMS"), &sums(&listed, &u));
    // The same through a symlinked folder: its files live outside --out.
    let v = run.root.join("v");
    let outside = run.root.join("outside");
    write(&outside.join("keep.csv"), "z\n");
    std::fs::create_dir_all(&v).unwrap();
    symlink(&outside, v.join("data")).unwrap();
    write(&v.join("SHA256SUMS"), &sums(&["data/keep.csv"], &v));

    for dir in [&u, &v] {
        let before = (snapshot(dir), snapshot(&outside));
        for cmd in ["pack", "build"] {
            let requests = run.hosts.total_requests();
            let o = kaokore_out(&run, cmd, dir, "idx,npz,parquet");
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd}: {e}");
            assert!(e.contains("not a kaokore build"), "{e}");
            assert!(
                e.contains("SHA256SUMS does not make a kaokore build"),
                "{e}"
            );
            assert!(e.contains("changed nothing"), "{e}");
            assert!(e.contains("Pass --out a new or empty directory"), "{e}");
            assert!(e.contains(&path_arg(dir)), "{e}");
            assert_eq!(
                run.hosts.total_requests(),
                requests,
                "{cmd} fetched before refusing"
            );
            assert_eq!((snapshot(dir), snapshot(&outside)), before, "{cmd}");
        }
    }
}

#[test]
fn a_rebuild_keeps_user_files_and_symlinked_folders_and_reports_what_it_removed() {
    let run = Run::new();
    let out = run.root.join("out");
    build_ok(&run, &out, "idx,npz,parquet");
    let idx_npz: Vec<String> = record_files(&out)
        .into_iter()
        .filter(|f| f.starts_with("idx/") || f.starts_with("npz/"))
        .collect();
    assert_eq!(idx_npz.len(), 15, "{idx_npz:?}");

    // The user's own files in the build, one inside a folder the rebuild drops, and a
    // symlinked folder.
    let elsewhere = run.root.join("elsewhere");
    write(&elsewhere.join("precious.txt"), "keep me\n");
    write(&out.join("mine.txt"), "mine\n");
    write(&out.join("npz/notes.txt"), "notes\n");
    symlink(&elsewhere, out.join("linked")).unwrap();
    let user = |dir: &Path| {
        let mut s = snapshot(dir);
        s.retain(|k, _| ["mine.txt", "npz/notes.txt", "linked"].contains(&k.as_str()));
        s
    };
    let (user_before, elsewhere_before) = (user(&out), snapshot(&elsewhere));
    assert_eq!(user_before.len(), 3);

    build_ok(&run, &out, "parquet");
    assert_eq!(user(&out), user_before, "the user's files are untouched");
    assert_eq!(snapshot(&elsewhere), elsewhere_before);
    assert!(
        !out.join("idx").exists(),
        "the dropped idx folder is removed"
    );
    let npz: Vec<_> = std::fs::read_dir(out.join("npz")).unwrap().collect();
    assert_eq!(npz.len(), 1, "only the user's file is left in npz/");
    let removed: Vec<String> = report(&out)["removed_stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, idx_npz, "report.json lists every removed file");
    let files = record_files(&out);
    assert!(
        files
            .iter()
            .all(|f| !f.starts_with("idx/") && !f.starts_with("npz/"))
    );
    assert!(files.contains(&"report.json".to_string()), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f == "mine.txt" || f.starts_with("linked"))
    );
}

/// A folder of the build replaced by a symlink: kaokore neither writes through it (the
/// build is refused) nor removes the recorded files behind it (they are left alone).
#[test]
fn a_symlinked_build_folder_is_never_written_through() {
    let run = Run::new();
    let out = run.root.join("out");
    build_ok(&run, &out, "idx,parquet");
    let elsewhere = run.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::rename(out.join("idx"), elsewhere.join("idx")).unwrap();
    symlink(elsewhere.join("idx"), out.join("idx")).unwrap();
    let before = (snapshot(&out), snapshot(&elsewhere));

    // Writing idx again would go through the symlink: refused before any fetch.
    let requests = run.hosts.total_requests();
    let o = kaokore_out(&run, "build", &out, "idx,parquet");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("idx is a symlink"), "{e}");
    assert!(e.contains("changed nothing"), "{e}");
    assert_eq!(run.hosts.total_requests(), requests);
    assert_eq!((snapshot(&out), snapshot(&elsewhere)), before);

    // A build without idx succeeds; the recorded idx files behind the symlink stay.
    build_ok(&run, &out, "parquet");
    assert_eq!(
        snapshot(&elsewhere),
        before.1,
        "nothing behind the symlink changed"
    );
    assert!(
        std::fs::symlink_metadata(out.join("idx"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(report(&out)["removed_stale"], serde_json::json!([]));
    assert!(record_files(&out).iter().all(|f| !f.starts_with("idx/")));

    // A recorded file replaced by a symlink is not replaced in turn: refused at commit.
    let readme = elsewhere.join("README.md");
    std::fs::rename(out.join("README.md"), &readme).unwrap();
    symlink(&readme, out.join("README.md")).unwrap();
    let before = (snapshot(&out), snapshot(&elsewhere));
    let o = kaokore_out(&run, "pack", &out, "parquet");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("README.md is a symlink"), "{e}");
    assert_eq!((snapshot(&out), snapshot(&elsewhere)), before);
}

#[test]
fn an_unusable_out_fails_at_once_before_any_fetch() {
    let run = Run::new();
    let file = run.root.join("a-file");
    write(&file, "not a directory\n");
    for (out, cmd) in [
        (file.clone(), "build"),
        (file.clone(), "pack"),
        (file.join("below"), "build"),
    ] {
        let o = kaokore_out(&run, cmd, &out, "npz");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd} {}: {e}", out.display());
        assert!(e.contains("is not a directory"), "{e}");
        assert_eq!(
            run.hosts.total_requests(),
            0,
            "{cmd} fetched before failing"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory\n");

    // A read-only directory: exit 1 (it is the right place, but cannot be written).
    let ro = run.root.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::create_dir(ro.join("probe")).is_ok() {
        // Running as root: permissions do not stop writes, nothing to test.
        std::fs::remove_dir(ro.join("probe")).unwrap();
        return;
    }
    for out in [ro.clone(), ro.join("new")] {
        let o = kaokore_out(&run, "build", &out, "npz");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("ermission denied"), "{e}");
        assert_eq!(run.hosts.total_requests(), 0);
    }
}

#[test]
fn foreign_and_untrusted_outs_are_refused_before_any_fetch() {
    let run = Run::new();
    // (directory, its files as (path, text), what the refusal says)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        // An older build: SHA256SUMS and artifacts, no record.
        (
            "old-build",
            &[("SHA256SUMS", "0  a\n"), ("npz/a.npz", "x")],
            "SHA256SUMS does not make a kaokore build",
        ),
        (
            "someone-else",
            &[("thesis.tex", "x")],
            "not a kaokore build",
        ),
        (
            "garbage-record",
            &[(RECORD_FILE, "{not json"), ("a.txt", "x")],
            "build record cannot be trusted",
        ),
        (
            "escaping-record",
            &[(
                RECORD_FILE,
                r#"{"kaokore_build":1,"dataset_version":"1.0","size":16,"formats":["npz"],"rows":{},"files":["../outside.txt"]}"#,
            )],
            "not a plain relative path",
        ),
    ];
    for (name, files, says) in cases {
        let out = run.root.join(name);
        for (path, text) in files {
            write(&out.join(path), text);
        }
        let before = snapshot(&out);
        let o = kaokore_out(&run, "build", &out, "npz");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {e}");
        assert!(e.contains(says), "{name}: {e}");
        assert_eq!(snapshot(&out), before, "{name}");
    }
    assert_eq!(run.hosts.total_requests(), 0);
}

/// A run killed during its first build leaves only its staging and temp files: the next
/// run takes the directory and cleans them up. An existing empty directory is taken too.
#[test]
fn leftovers_of_a_killed_first_build_and_empty_dirs_are_accepted() {
    let run = Run::new();
    let out = run.root.join("out");
    write(
        &out.join(".kaokore-staging-999999999-0/npz/kaokore-train-imgs.npz"),
        "half",
    );
    write(&out.join(format!("{RECORD_FILE}.tmp-999999999")), "{");
    write(&out.join(".report.json.tmp-999999999"), "{");
    build_ok(&run, &out, "npz");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("999999999")),
        "leftovers are removed: {names:?}"
    );
    assert!(out.join(RECORD_FILE).is_file());

    let empty = run.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    build_ok(&run, &empty, "npz");
    assert!(empty.join(RECORD_FILE).is_file());
}

#[test]
fn artifacts_and_record_do_not_depend_on_the_out_path() {
    let run = Run::new();
    let a = run.root.join("a");
    let b = run.root.join("deeper/other-name");
    build_ok(&run, &a, "idx,npz,parquet");
    build_ok(&run, &b, "idx,npz,parquet");
    for name in ["SHA256SUMS", RECORD_FILE] {
        let (x, y) = (
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
        );
        assert!(
            x == y,
            "{name} differs between --out a and --out deeper/other-name"
        );
    }
    let record = std::fs::read_to_string(a.join(RECORD_FILE)).unwrap();
    assert!(!record.contains(&path_arg(&run.root)), "{record}");
}
