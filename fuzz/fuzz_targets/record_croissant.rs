//! The JSON and text files verify reads before any artifact: the build record
//! (src/out/record.rs), croissant.json (src/verify/croissant.rs), SHA256SUMS, the tfds
//! dataset_info.json and the copied labels.csv, each replaced in a valid build.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FILES: &[&str] = &[
    ".kaokore-build.json",
    "croissant.json",
    "SHA256SUMS",
    "tfds/kaokore/1.0.0/dataset_info.json",
    "labels.csv",
];

fuzz_target!(|data: &[u8]| kaokore_fuzz::verify_with_replaced(FILES, data));
