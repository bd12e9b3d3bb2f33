//! Small but real metadata for tests: a version's upstream files cut down to the first
//! lines of urls.txt, so a test runs the real quirks (blank lines, the hosts' URL forms,
//! every split and class) without pushing a whole version through a debug build.

use std::path::{Path, PathBuf};

/// Write into `meta` the first `n` lines of `version`'s urls.txt and the labels and tags of
/// those images (ids below `n`). Returns `meta`, for `--metadata`.
pub fn small_metadata(version: &str, meta: &Path, n: u32) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("data/kaokore-metadata/v{version}"));
    std::fs::create_dir_all(meta).unwrap();
    let read = |f: &str| std::fs::read_to_string(src.join(f)).unwrap();
    let id_of = |line: &str| line.get(..8).and_then(|d| d.parse::<u32>().ok());
    let all_urls = read("urls.txt");
    let urls: Vec<&str> = all_urls.lines().take(n as usize).collect();
    std::fs::write(meta.join("urls.txt"), urls.join("\n") + "\n").unwrap();
    let labels = read("labels.csv");
    let mut kept: Vec<&str> = labels.lines().take(1).collect();
    kept.extend(
        labels
            .lines()
            .skip(1)
            .filter(|l| id_of(l).is_some_and(|id| id < n)),
    );
    std::fs::write(meta.join("labels.csv"), kept.join("\n") + "\n").unwrap();
    let tags = read("original_tags.txt");
    let kept: Vec<&str> = tags
        .lines()
        .filter(|l| id_of(l).is_some_and(|id| id < n))
        .collect();
    std::fs::write(meta.join("original_tags.txt"), kept.join("\n") + "\n").unwrap();
    for f in ["labels.metadata.en.txt", "labels.metadata.ja.txt"] {
        std::fs::copy(src.join(f), meta.join(f)).unwrap();
    }
    meta.to_path_buf()
}
