//! verify's Parquet reader (src/pack/parquet.rs) on a file of a valid build replaced by
//! the fuzzer's (mutated) bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FILES: &[&str] = &[
    "parquet/train-00000-of-00001.parquet",
    "parquet/dev-00000-of-00001.parquet",
];

fuzz_target!(|data: &[u8]| kaokore_fuzz::verify_with_replaced(FILES, data));
