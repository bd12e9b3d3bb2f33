//! What a directory holds, walked without following symlinks: for tests that prove kaokore
//! left something untouched, or wrote the same files twice.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::Path;

/// Every entry below `dir` (hidden ones included, symlinks not followed): relative path,
/// `/`-separated, -> its metadata. An entry removed while it is walked is left out.
pub fn walk(dir: &Path) -> BTreeMap<String, Metadata> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, Metadata>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                visit(root, &p, out);
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy();
            out.insert(rel.replace('\\', "/"), meta);
        }
    }
    let mut out = BTreeMap::new();
    visit(dir, dir, &mut out);
    out
}

/// Relative path -> `file <sha256>`, `dir`, or `link -> target`. Two equal snapshots mean
/// nothing was touched.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    walk(dir)
        .into_iter()
        .map(|(rel, meta)| {
            let p = dir.join(&rel);
            let what = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                format!("link -> {}", target.display())
            } else if meta.is_dir() {
                "dir".into()
            } else {
                let bytes = std::fs::read(&p).unwrap();
                format!("file {}", kaokore::pack::sha256_hex(&bytes))
            };
            (rel, what)
        })
        .collect()
}

/// The regular files below `dir`: relative path -> bytes.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|(_, meta)| meta.is_file())
        .map(|(rel, _)| {
            let bytes = std::fs::read(dir.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}
