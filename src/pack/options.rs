//! How the CPU stages normalize, encode and pack: pack's options as plain values.

use std::collections::BTreeMap;

use super::Formats;
use super::format::FormatOption;

/// How the CPU stages normalize, encode and pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Normalized edge length S: every image becomes S x S RGB.
    pub size: u32,
    /// Several sizes packed in one pass (`--size 64,128,256`), each a complete build in
    /// `size-{S}/`; empty (or `size` alone) packs `size` into the output directory itself.
    pub sizes: Vec<u32>,
    pub formats: Formats,
    /// CPU worker threads.
    pub jobs: usize,
    /// Write nothing if an image does not decode (`--strict`).
    pub refuse_undecodable: bool,
    /// Values of the formats' own options (see [`FormatOption`]), by flag; an option not
    /// set here has its default.
    pub format_options: BTreeMap<&'static str, u64>,
}

impl PackOptions {
    /// The sizes to pack, without repeats: `sizes`, or `size` when it is empty.
    pub fn all_sizes(&self) -> Vec<u32> {
        let mut sizes: Vec<u32> = Vec::new();
        for &s in &self.sizes {
            if !sizes.contains(&s) {
                sizes.push(s);
            }
        }
        if sizes.is_empty() {
            sizes.push(self.size);
        }
        sizes
    }

    /// The value of a format's option: as set, else its default.
    pub fn option(&self, option: &FormatOption) -> u64 {
        self.format_options
            .get(option.flag)
            .copied()
            .unwrap_or_else(|| option.default_value())
    }

    /// Set a format's option.
    pub fn set_option(&mut self, option: &FormatOption, value: u64) {
        self.format_options.insert(option.flag, value);
    }

    /// These options for one size alone: a build of `size` only.
    pub fn for_size(&self, size: u32) -> PackOptions {
        PackOptions {
            size,
            sizes: vec![size],
            ..self.clone()
        }
    }
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            size: 256,
            sizes: Vec::new(),
            formats: Formats::default(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            refuse_undecodable: false,
            format_options: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_drop_repeats_and_default_to_size() {
        let mut o = PackOptions {
            size: 96,
            ..PackOptions::default()
        };
        assert_eq!(o.all_sizes(), [96]);
        o.sizes = vec![64, 256, 64];
        assert_eq!(o.all_sizes(), [64, 256]);
        // `--size 64,64` is one size: today's layout, no size directory.
        o.sizes = vec![64, 64];
        assert_eq!(o.all_sizes(), [64]);
    }
}
