//! original_tags.txt (repeated keys, stray `=`, empty values), parsed with the other files valid:
//! an error or a dataset whose records, labels and row order keep their invariants,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Reading a metadata file refuses what is not UTF-8 before any parser sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut files = kaokore_fuzz::files();
    files.original_tags = text.to_string();
    kaokore_fuzz::parse_and_check(files);
});
