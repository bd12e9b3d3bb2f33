//! One cache shared by several processes (builds at once, containers, hosts of a network
//! file system): each build packs exactly the bytes it checked, temp files are removed
//! only when an hour old and only by commands that write, and `info` never deletes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kaokore::fetch::Cache;
use kaokore_fixture::Fault;

use crate::support::{Run, kaokore_verify, path_arg, report, stderr};

/// `kaokore CMD` of the first `n` v1.0 images with the run's cache, quiet.
fn command(run: &Run, cmd: &str, n: u32) -> std::process::Command {
    let mut c = run.kaokore(cmd);
    c.args(["--dataset-version", "1.0", "--quiet", "--metadata"])
        .arg(run.metadata(n))
        .arg("--cache")
        .arg(run.cache());
    c
}

/// A temp file named as the cache names its own, in the shard of `url`'s entry.
fn temp_file(cache: &Cache, url: &str, suffix: &str) -> PathBuf {
    let entry = cache.path_for(url);
    let stem = entry.file_stem().unwrap().to_str().unwrap();
    let path = entry.with_file_name(format!(".{stem}.{suffix}.tmp"));
    std::fs::write(&path, b"half an image").unwrap();
    path
}

fn age(path: &Path, by: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - by)
        .unwrap();
}

/// Two builds at once into one new cache, from servers whose bytes differ on every
/// request: each replaces the other's entries, and each must still pack, in every
/// format, the one file it checked (Parquet keeps the fetched JPEG at 256, npz and idx
/// hold its pixels: verify compares them).
#[test]
fn two_builds_sharing_a_cache_each_pack_what_they_checked() {
    let run = Run::new();
    for fx in run.hosts.all() {
        fx.add_fault("/", Fault::VaryPerRequest, u32::MAX);
    }
    let outs = [run.root.join("out1"), run.root.join("out2")];
    let children: Vec<_> = outs
        .iter()
        .map(|out| {
            command(&run, "build", 120)
                .arg("--out")
                .arg(out)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, out) in children.into_iter().zip(&outs) {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v = kaokore_verify(out);
        assert!(v.status.success(), "{}: {}", out.display(), stderr(&v));
        let r = report(out);
        assert_eq!(
            r["counts"]["packed_total"], r["counts"]["requested"],
            "{}",
            r["counts"]
        );
    }
    // Both fetched every image: the servers saw each URL twice, and answered differently.
    assert!(run.hosts.total_requests() >= 2 * 100);
}

#[test]
fn info_never_deletes_and_fetch_removes_only_hour_old_temp_files() {
    let run = Run::new();
    let o = command(&run, "fetch", 12).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let cache = Cache::open_to_read(&run.cache());
    let urls: Vec<String> = std::fs::read_to_string(run.metadata(12).join("urls.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let fresh = temp_file(&cache, &urls[0], "0123456789abcdef");
    let old = temp_file(&cache, &urls[1], "fedcba9876543210");
    // Of an older kaokore (pid and counter), left by a process long dead.
    let old_style = temp_file(&cache, &urls[2], "4194303.7");
    age(&old, Duration::from_secs(2 * 3600));
    age(&old_style, Duration::from_secs(3 * 3600));

    // info only looks, whatever the age of what it finds.
    let o = crate::support::kaokore()
        .args(["info", "--dataset-version", "1.0", "--metadata"])
        .arg(run.metadata(12))
        .args(["--cache", &path_arg(&run.cache())])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for path in [&fresh, &old, &old_style] {
        assert!(path.exists(), "info removed {}", path.display());
    }

    // A fetch (which writes) removes what is an hour old, and nothing younger: that may
    // be a write in progress in a process this one cannot see.
    let o = command(&run, "fetch", 12).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(fresh.exists(), "a fresh temp file was removed");
    assert!(
        !old.exists() && !old_style.exists(),
        "hour-old temp files stay"
    );
    for url in &urls {
        if !url.is_empty() {
            assert!(cache.contains(url), "{url}");
        }
    }
}
