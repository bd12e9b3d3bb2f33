//! verify's tar (WebDataset) and TFRecord readers (src/pack/webdataset.rs, tfds.rs) and
//! its check of a per-image file (src/pack/images.rs), each replaced in a valid build by
//! the fuzzer's (mutated) bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FILES: &[&str] = &[
    "webdataset/train-000000.tar",
    "webdataset/dev-000000.tar",
    "tfds/kaokore/1.0.0/kaokore-train.tfrecord-00000-of-00001",
    "images_16/00000000.jpg",
];

fuzz_target!(|data: &[u8]| kaokore_fuzz::verify_with_replaced(FILES, data));
