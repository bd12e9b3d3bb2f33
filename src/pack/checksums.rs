//! SHA256SUMS: one `HASH  PATH` line per artifact, sorted by path, paths relative to the
//! output directory, so `sha256sum -c SHA256SUMS` checks a build from inside it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Artifact;

pub const SHA256SUMS: &str = "SHA256SUMS";

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest: the one hex encoder of kaokore's checksums.
pub(crate) fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for &b in digest {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Size and SHA-256 of a file, read in blocks.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    hash_reader(File::open(path)?)
}

/// Length and SHA-256 of everything `reader` yields, read in blocks.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
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
