//! Several sizes in one pass, through the binary: `--size 32,48` writes a complete,
//! verifiable build per size in `size-{S}/` from one fetch, each the same as a build of
//! that size alone; `--out` records the sizes, so switching between one size and several
//! replaces only what kaokore wrote, and `verify` of `--out` checks every size.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore::out::RECORD_FILE;
use kaokore_fixture::Fault;

use crate::support::tree::snapshot;
use crate::support::{Run, kaokore_verify, stderr};

const FORMATS: &str = "idx,npz,parquet,mnist";

/// Images of the v1.0 metadata these builds take (ids below it).
const IMAGES: u32 = 30;

/// `kaokore CMD --size SIZES --formats FORMATS --out OUT` of the first [`IMAGES`] images,
/// with the image cache `ROOT/CACHE`.
fn sizes_command(
    run: &Run,
    cmd: &str,
    sizes: &str,
    formats: &str,
    cache: &str,
    out: &Path,
) -> Command {
    let mut c = run.kaokore(cmd);
    c.args(["--quiet", "--dataset-version", "1.0", "--size", sizes])
        .args(["--jobs", "2", "--formats", formats, "--metadata"])
        .arg(run.metadata(IMAGES))
        .arg("--cache")
        .arg(run.root.join(cache))
        .arg("--out")
        .arg(out);
    c
}

fn sizes_output(
    run: &Run,
    cmd: &str,
    sizes: &str,
    formats: &str,
    cache: &str,
    out: &Path,
) -> Output {
    sizes_command(run, cmd, sizes, formats, cache, out)
        .output()
        .expect("run kaokore")
}

/// `kaokore CMD --size SIZES --out OUT`, formats [`FORMATS`]; must succeed.
fn ok(run: &Run, cmd: &str, sizes: &str, out: &Path) {
    let o = sizes_output(run, cmd, sizes, FORMATS, "cache", out);
    assert!(o.status.success(), "{cmd} --size {sizes}: {}", stderr(&o));
}

/// Labelled images with a URL in the metadata: what a build fetches.
fn packable(run: &Run) -> usize {
    let meta = run.metadata(IMAGES);
    let urls = std::fs::read_to_string(meta.join("urls.txt")).unwrap();
    let labels = std::fs::read_to_string(meta.join("labels.csv")).unwrap();
    labels
        .lines()
        .skip(1)
        .filter_map(|l| l.get(..8)?.parse::<usize>().ok())
        .filter(|&id| urls.lines().nth(id).is_some_and(|u| !u.trim().is_empty()))
        .count()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn record(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&read(&dir.join(RECORD_FILE))).unwrap()
}

#[test]
fn several_sizes_build_each_completely_from_one_fetch() {
    let run = Run::new();
    let out = run.root.join("out");
    ok(&run, "build", "32,48", &out);
    assert_eq!(
        run.hosts.total_requests(),
        packable(&run),
        "each image fetched once for both sizes"
    );

    for size in [32, 48] {
        let dir = out.join(format!("size-{size}"));
        let v = kaokore_verify(&dir);
        assert!(v.status.success(), "size-{size}: {}", stderr(&v));
        assert_eq!(record(&dir)["size"], size);
        for f in ["README.md", "croissant.json", "report.json", "SHA256SUMS"] {
            assert!(dir.join(f).is_file(), "size-{size}/{f}");
        }
        let sums = read(&dir.join("SHA256SUMS"));
        for dir in ["idx/", "npz/", "parquet/", "mnist/"] {
            assert!(sums.contains(dir), "size-{size} lacks {dir}");
        }
        // The same build as that size packed on its own, from the same cache.
        let alone = run.root.join(format!("alone-{size}"));
        ok(&run, "pack", &size.to_string(), &alone);
        assert_eq!(sums, read(&alone.join("SHA256SUMS")), "size {size}");
    }
    assert_ne!(
        read(&out.join("size-32/SHA256SUMS")),
        read(&out.join("size-48/SHA256SUMS"))
    );
    // No single-size layout beside the size directories.
    assert!(!out.join("SHA256SUMS").exists() && !out.join("idx").exists());
    let top = record(&out);
    assert_eq!(top["sizes"], serde_json::json!([32, 48]));
    let files: Vec<&str> = top["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"size-32/SHA256SUMS") && files.contains(&"size-48/report.json"));
    assert!(files.contains(&"size-48/.kaokore-build.json"));
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("size-32/") || f.starts_with("size-48/"))
    );

    // A rerun with the cache full fetches nothing and writes the same bytes.
    let before = run.hosts.total_requests();
    let again = run.root.join("again");
    ok(&run, "build", "32,48", &again);
    assert_eq!(run.hosts.total_requests(), before);
    for size in ["size-32", "size-48"] {
        assert_eq!(
            read(&out.join(size).join("SHA256SUMS")),
            read(&again.join(size).join("SHA256SUMS"))
        );
    }
}

#[test]
fn verify_of_the_output_checks_every_size() {
    let run = Run::new();
    let out = run.root.join("out");
    ok(&run, "build", "32,48", &out);
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));

    // A pixel byte changed in the second size only: verify of --out finds it there.
    let npz = out.join("size-48/npz/kaokore-train-imgs.npz");
    let mut bytes = std::fs::read(&npz).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&npz, bytes).unwrap();
    let v = kaokore_verify(&out);
    assert!(!v.status.success());
    let text = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    assert!(
        text.contains("size-48/npz/kaokore-train-imgs.npz"),
        "{text}"
    );
    assert!(!text.contains("size-32/"), "{text}");

    // A size directory gone is a problem too.
    std::fs::remove_dir_all(out.join("size-32")).unwrap();
    let v = kaokore_verify(&out);
    assert!(!v.status.success());
    let text = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    assert!(text.contains("size-32"), "{text}");
}

#[test]
fn switching_between_one_size_and_several_replaces_only_kaokores_files() {
    let run = Run::new();
    let out = run.root.join("out");
    ok(&run, "build", "32,48", &out);
    std::fs::write(out.join("notes.txt"), "mine\n").unwrap();
    std::fs::write(out.join("size-48/mine.txt"), "mine too\n").unwrap();

    // Several -> one: the size directories' files go, the user's files stay.
    ok(&run, "build", "32", &out);
    assert!(!out.join("size-32").exists(), "size-32 removed");
    assert_eq!(read(&out.join("notes.txt")), "mine\n");
    assert_eq!(read(&out.join("size-48/mine.txt")), "mine too\n");
    let kept: Vec<_> = std::fs::read_dir(out.join("size-48"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        kept,
        ["mine.txt"],
        "only the user's file is left in size-48/"
    );
    assert!(record(&out).get("sizes").is_none());
    assert_eq!(record(&out)["size"], 32);
    let alone = run.root.join("alone");
    ok(&run, "pack", "32", &alone);
    assert_eq!(
        read(&out.join("SHA256SUMS")),
        read(&alone.join("SHA256SUMS"))
    );
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));

    // One -> several: the one-size artifacts go, the user's file stays.
    std::fs::remove_file(out.join("size-48/mine.txt")).unwrap();
    ok(&run, "pack", "48,32", &out);
    assert!(!out.join("SHA256SUMS").exists());
    assert!(!out.join("idx").exists() && !out.join("README.md").exists());
    assert_eq!(read(&out.join("notes.txt")), "mine\n");
    assert_eq!(record(&out)["sizes"], serde_json::json!([48, 32]));
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn a_blocked_size_directory_is_refused_before_any_fetch() {
    let run = Run::new();
    let out = run.root.join("out");
    // A previous build of both sizes, then the user's symlink where size-48's npz goes.
    ok(&run, "build", "32,48", &out);
    let outside = run.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::remove_dir_all(out.join("size-48/npz")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("size-48/npz")).unwrap();
    let before = snapshot(&out);
    let asked = run.hosts.total_requests();
    let o = sizes_output(&run, "build", "32,48", FORMATS, "cache-2", &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("npz"), "{}", stderr(&o));
    assert_eq!(run.hosts.total_requests(), asked, "nothing fetched");
    assert_eq!(snapshot(&out), before);
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn a_size_whose_commit_is_refused_leaves_every_size_as_it_was() {
    let run = Run::new();
    let out = run.root.join("out");
    let o = sizes_output(&run, "build", "32,48", "idx,npz", "cache", &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&out);

    // The same sizes with Parquet added, from another cache, one image held back by the
    // server: while the build waits for it, a file of the user's appears where size-48's
    // parquet/ goes (after the checks at the start), so only that size's commit can refuse.
    let urls = read(&run.metadata(IMAGES).join("urls.txt"));
    let held = urls.lines().find(|l| !l.trim().is_empty()).unwrap();
    let held = &held[held.find("/iipsrv/").unwrap()..];
    for fx in run.hosts.all() {
        fx.add_fault(held, Fault::Stall(Duration::from_secs(3)), 1);
    }
    let mut child = sizes_command(&run, "build", "32,48", "idx,npz,parquet", "cache-2", &out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Both sizes are staged in --out itself: nothing is made in size-S/ before the commit.
    let staged = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".kaokore-staging-")
            })
            .count()
    };
    while staged(&out) < 2 {
        assert!(Instant::now() < deadline, "the pack never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(out.join("size-48/parquet"), "mine\n").unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    // A file of the user's in the way: exit 2, as when it is there from the start.
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("size-48") && err.contains("parquet"), "{err}");

    // size-32 could have been committed: it was not. Every file is as it was.
    let mut after = snapshot(&out);
    assert_eq!(
        after.remove("size-48/parquet").as_deref(),
        Some(&*format!("file {}", kaokore::pack::sha256_hex(b"mine\n")))
    );
    assert_eq!(after, before, "{err}");
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));

    // The user's file moved away, the same build goes through.
    std::fs::remove_file(out.join("size-48/parquet")).unwrap();
    let o = sizes_output(&run, "build", "32,48", "idx,npz,parquet", "cache-2", &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read(&out.join("size-32/SHA256SUMS")).contains("parquet/"));
}
