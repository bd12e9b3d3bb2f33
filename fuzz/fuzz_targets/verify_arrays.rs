//! verify's idx, MNIST and npz readers (src/pack/idx.rs, mnist.rs, npz.rs, zip.rs,
//! read.rs) on a file of a valid build replaced by the fuzzer's (mutated) bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FILES: &[&str] = &[
    "idx/kaokore-train-images-idx4-ubyte.gz",
    "idx/kaokore-train-gender-idx1-ubyte.gz",
    "idx/kaokore-dev-status-idx1-ubyte.gz",
    "npz/kaokore-train-imgs.npz",
    "npz/kaokore-train-labels.npz",
    "mnist/kaokore-train-images-idx3-ubyte.gz",
];

fuzz_target!(|data: &[u8]| kaokore_fuzz::verify_with_replaced(FILES, data));
