//! The TFRecord framing reader and the `tf.train.Example` decoder (src/pack/tfds.rs) on
//! the fuzzer's bytes directly: inside a file, every mutation fails the framing's CRC-32C
//! before the decoder sees it. A decoded example must encode to bytes that decode to
//! the same encoding.
#![no_main]

use kaokore::pack::tfds::{Example, TfRecordReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(example) = Example::decode(data) {
        let encoded = example.encode();
        let again = Example::decode(&encoded).expect("an encoded example decodes");
        assert!(
            again.encode() == encoded,
            "an example changed in a round trip"
        );
    }
    let mut reader = TfRecordReader::new(data, Some(data.len() as u64));
    for _ in 0..data.len() + 1 {
        match reader.next_record(1 << 20) {
            Ok(Some(record)) => assert!(record.len() <= data.len()),
            Ok(None) | Err(_) => break,
        }
    }
});
