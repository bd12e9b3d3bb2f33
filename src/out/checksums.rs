//! SHA256SUMS: one `HASH  PATH` line per artifact, sorted by path, paths relative to the
//! output directory, so `sha256sum -c SHA256SUMS` checks a build from inside it.

use std::fs::File;
use std::io;
use std::path::Path;

use super::Artifact;

pub use crate::digest::{hash_reader, hex, sha256_hex};
pub use crate::layout::SHA256SUMS;

/// Size and SHA-256 of a file, read in blocks.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    hash_reader(File::open(path)?)
}

/// The SHA256SUMS text of `artifacts` (already sorted by path).
pub fn render(artifacts: &[Artifact]) -> String {
    artifacts
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.path))
        .collect()
}

/// (hash, path) pairs of a SHA256SUMS text; lines that are not `HASH  PATH` (or the binary
/// mode `HASH *PATH`) are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (hash, rest) = line.split_once(' ')?;
            let path = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !path.is_empty())
                .then(|| (hash.to_ascii_lowercase(), path.to_string()))
        })
        .collect()
}
