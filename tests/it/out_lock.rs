//! One build at a time per `--out`: a second build or pack is refused at once, naming the
//! process that holds `.kaokore-lock`; verify waits for a build in progress; the lock file
//! is no artifact; and a `--out` swapped for a symlink while a build runs is not written
//! through.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore::out::{OutLock, RECORD_FILE};
use kaokore_fixture::Fault;

use crate::support::tree::snapshot;
use crate::support::{Run, kaokore, kaokore_verify, stderr};

const LOCK: &str = ".kaokore-lock";

/// Images of the v1.0 metadata these builds take (ids below it).
const IMAGES: u32 = 24;

fn args(run: &Run, formats: &str, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["--quiet", "--dataset-version", "1.0", "--size", "16"]
        .map(String::from)
        .into();
    a.extend([
        "--jobs".into(),
        "1".into(),
        "--formats".into(),
        formats.into(),
    ]);
    a.extend([
        "--metadata".into(),
        run.metadata(IMAGES).display().to_string(),
    ]);
    a.extend(["--cache".into(), run.cache().display().to_string()]);
    a.extend(["--out".into(), out.display().to_string()]);
    a
}

fn command(run: &Run, cmd: &str, formats: &str, out: &Path) -> Command {
    let mut c = run.kaokore(cmd);
    c.args(args(run, formats, out));
    c
}

fn output(run: &Run, cmd: &str, formats: &str, out: &Path) -> Output {
    command(run, cmd, formats, out).output().unwrap()
}

fn ok(run: &Run, cmd: &str, formats: &str, out: &Path) {
    let o = output(run, cmd, formats, out);
    assert!(o.status.success(), "{cmd} {formats}: {}", stderr(&o));
}

#[test]
fn a_second_build_or_pack_is_refused_at_once_naming_the_holder() {
    let run = Run::new();
    let out = run.out();
    ok(&run, "build", "idx,npz,parquet", &out);
    assert!(!out.join(LOCK).exists(), "removed at exit");
    let before = snapshot(&out);

    // This process holds the lock, as a running build does.
    let lock = OutLock::acquire(&out).unwrap();
    let requests = run.hosts.total_requests();
    for cmd in ["pack", "build"] {
        let o = output(&run, cmd, "idx", &out);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("in use by another kaokore process"), "{e}");
    }
    assert_eq!(
        run.hosts.total_requests(),
        requests,
        "refused before fetching"
    );
    drop(lock);
    assert_eq!(snapshot(&out), before, "nothing changed");
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));
}

/// Issue 17, item 2: two packs into one `--out` at once both failed and destroyed the
/// build. Now the second is refused while the first runs, and the first delivers. The
/// first is slowed down (strace delays its first rename, the start of its commit) so that
/// they overlap.
#[test]
fn two_packs_at_once_give_one_build_and_one_refusal() {
    let traced = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !traced {
        eprintln!("SKIPPED: strace cannot run here");
        return;
    }
    let run = Run::new();
    let out = run.out();
    ok(&run, "build", "idx,npz,parquet", &out);

    let mut first = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e"])
        .arg("inject=rename,renameat,renameat2:delay_enter=3000000:when=1")
        .arg(env!("CARGO_BIN_EXE_kaokore"))
        .arg("pack")
        .args(args(&run, "idx", &out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first holds the lock once its pid is in the lock file.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let text = std::fs::read_to_string(out.join(LOCK)).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<u32>() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the first pack never locked");
        std::thread::sleep(Duration::from_millis(10));
    };
    let second = output(&run, "pack", "parquet,mnist", &out);
    let e = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{e}");
    assert!(e.contains(&format!("pid {pid}")), "{e}");
    assert!(
        first.try_wait().unwrap().is_none(),
        "refused while the first still ran"
    );
    let status = first.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");

    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains("idx/") && !sums.contains("parquet/"),
        "{sums}"
    );
    assert!(!sums.contains(LOCK), "{sums}");
    assert!(!out.join(LOCK).exists());
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));
}

/// The lock file is kaokore's: one a killed run left is taken over, never listed in
/// SHA256SUMS nor reported by verify, and removed at exit; verify waits for a build that
/// holds it.
#[test]
fn a_left_lock_file_is_no_artifact_and_verify_waits_for_the_holder() {
    let run = Run::new();
    let out = run.out();
    ok(&run, "build", "npz", &out);
    // As a killed run leaves it: a pid that runs no more.
    std::fs::write(out.join(LOCK), "999999999\n").unwrap();
    let v = kaokore_verify(&out);
    let e = stderr(&v);
    assert!(v.status.success(), "{e}");
    assert!(!e.contains(LOCK), "{e}");
    let json = kaokore()
        .args(["verify", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["extra_files_count"], 0, "{doc}");

    ok(&run, "pack", "npz,idx", &out);
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(!sums.contains(LOCK), "{sums}");
    let record = std::fs::read_to_string(out.join(RECORD_FILE)).unwrap();
    assert!(!record.contains(LOCK), "{record}");
    assert!(!out.join(LOCK).exists(), "removed at exit");

    // A build holds it for a while: verify waits, then checks the build it left.
    let lock = OutLock::acquire(&out).unwrap();
    let verify = kaokore()
        .arg("verify")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(lock);
    let v = verify.wait_with_output().unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
}

/// Issue 17, item 5: `--out` replaced by a symlink while the build fetched; kaokore wrote
/// its record, card and artifacts into the symlink's target. Now the build stops before
/// writing anything there (exit 1), and the target is untouched.
#[test]
fn an_out_swapped_for_a_symlink_is_not_written_through() {
    let run = Run::new();
    let out = run.out();
    ok(&run, "build", "idx,npz", &out);
    let before = snapshot(&out);

    // A second build from another cache, one image held back by the server.
    let urls = std::fs::read_to_string(run.metadata(IMAGES).join("urls.txt")).unwrap();
    let held = urls.lines().find(|l| !l.trim().is_empty()).unwrap();
    let held = &held[held.find("/iipsrv/").unwrap()..];
    for fx in run.hosts.all() {
        fx.add_fault(held, Fault::Stall(Duration::from_secs(3)), 1);
    }
    let mut a = args(&run, "idx,npz", &out);
    let cache = a.iter().position(|x| x == "--cache").unwrap() + 1;
    a[cache] = run.root.join("cache-2").display().to_string();
    let mut child = run
        .kaokore("build")
        .args(a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = |dir: &Path| {
        std::fs::read_dir(dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".kaokore-staging-")
        })
    };
    while !staged(&out) {
        assert!(Instant::now() < deadline, "the pack never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let moved = run.root.join("moved");
    std::fs::rename(&out, &moved).unwrap();
    let target = run.root.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("mine.txt"), "mine\n").unwrap();
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let target_before = snapshot(&target);

    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("replaced"), "{err}");
    assert_eq!(snapshot(&target), target_before, "{err}");
    // The build it started in is as it was, but for what the stopped run left (its
    // staging directory and lock file, which the next run there removes).
    let mut after = snapshot(&moved);
    after.retain(|k, _| !k.starts_with(".kaokore-staging-") && k != LOCK);
    assert_eq!(after, before);
    std::fs::remove_file(&out).unwrap();
    std::fs::rename(&moved, &out).unwrap();
    ok(&run, "pack", "idx,npz", &out);
    let v = kaokore_verify(&out);
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(!staged(&out) && !out.join(LOCK).exists());
}
