//! What the integration tests share: running the binary against the fixture hosts (`Run`),
//! small real metadata, directory snapshots, and the inline dataset and image files of the
//! pack and verify tests.

pub mod inline;
pub mod metadata;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kaokore_fixture::{FixtureConfig, FixtureHosts};

/// The `kaokore` binary of this build, with no argument yet.
pub fn kaokore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaokore"))
}

/// What a finished `kaokore` wrote to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `DIR/report.json`, parsed.
pub fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("report.json is JSON")
}

/// Where a test runs the binary: a temporary root, and one fixture IIIF server per KaoKore
/// host. Dropping it stops the servers and removes the root.
pub struct Run {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub hosts: FixtureHosts,
}

impl Run {
    pub fn new() -> Run {
        Run::with(FixtureConfig::default())
    }

    /// Every host's server started with `config`.
    pub fn with(config: FixtureConfig) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        Run {
            root: tmp.path().to_path_buf(),
            _tmp: tmp,
            hosts: FixtureHosts::start(config),
        }
    }

    /// `ROOT/cache`, the image cache unless a test names another.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// `ROOT/out`, the output directory unless a test names another.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// The real v1.0 files cut down to the images with id < `n` (see `metadata`), written
    /// under the root on first use. With n = 300: Keio ids 0-51 and 90-245, Kyoto 52-89,
    /// CODH 246-299.
    pub fn metadata(&self, n: u32) -> PathBuf {
        let dir = self.root.join(format!("meta-{n}"));
        if !dir.exists() {
            metadata::small_metadata("1.0", &dir, n);
        }
        dir
    }

    /// `kaokore CMD`, and for the commands that fetch (`build`, `fetch`) the `--rewrite`
    /// rules that send every host's URLs to its fixture server.
    pub fn kaokore(&self, cmd: &str) -> Command {
        let mut command = kaokore();
        command.arg(cmd);
        if matches!(cmd, "build" | "fetch") {
            command.args(self.hosts.rewrite_args());
        }
        command
    }
}

/// `kaokore verify DIR`.
pub fn kaokore_verify(dir: &Path) -> Output {
    kaokore()
        .arg("verify")
        .arg(dir)
        .output()
        .expect("run kaokore")
}
