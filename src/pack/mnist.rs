//! mnist: grayscale idx files laid out as MNIST's and KMNIST's, so that torchvision's
//! `read_image_file` / `read_label_file` and idx2numpy load them as they load KMNIST:
//! `mnist/kaokore-{split}-images-idx3-ubyte.gz` (uint8 N x S x S, magic 0x00000803) and
//! `mnist/kaokore-{split}-{gender,status}-idx1-ubyte.gz` (uint8 N, magic 0x00000801).
//!
//! A gray pixel is exactly what Pillow's `convert("L")` makes of the normalized RGB pixel
//! (see [`crate::normalize::to_gray`]); the gray rows are deflated once on the pool and
//! streamed like the RGB idx rows.

use super::format::{CardRow, Format, Payload, WriterContext};
use super::idx::{IdxLayout, IdxWriter};
use super::read::{Channels, PixelSource, Problems, RowLabels, SplitAt};
use super::{FormatWriter, PackError};
use crate::metadata::Split;

/// `mnist/kaokore-{split}-images-idx3-ubyte.gz`
pub fn mnist_images_name(split: Split) -> String {
    format!("mnist/kaokore-{split}-images-idx3-ubyte.gz")
}

/// `mnist/kaokore-{split}-{label}-idx1-ubyte.gz`, label `gender` or `status`.
pub fn mnist_labels_name(split: Split, label: &str) -> String {
    format!("mnist/kaokore-{split}-{label}-idx1-ubyte.gz")
}

const MNIST: IdxLayout = IdxLayout {
    images: mnist_images_name,
    labels: mnist_labels_name,
    channels: Channels::Gray,
};

/// The grayscale MNIST-compatible files.
pub(crate) struct Mnist;

impl Format for Mnist {
    fn name(&self) -> &'static str {
        "mnist"
    }

    fn about(&self) -> &'static str {
        "mnist/*-idx3-ubyte.gz: uint8 (N, S, S) gray, for torchvision's MNIST readers"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::GrayPixels]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        MNIST.files()
    }

    fn card_rows(&self, size: u32) -> Vec<CardRow> {
        MNIST.card_rows(size)
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/gzip"
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(IdxWriter::create(&MNIST, ctx)?))
    }

    fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        MNIST.read_labels(at, report)
    }

    fn open_pixels(&self, at: &SplitAt<'_>, report: &mut Problems) -> Option<Box<dyn PixelSource>> {
        MNIST.open_pixels(at, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::idx::tests::check;

    #[test]
    fn gray_rows_stream_into_idx3_files() {
        check(&Mnist, &MNIST, &[]);
    }

    #[test]
    fn missing_gray_rows_correct_the_header_written_up_front() {
        check(&Mnist, &MNIST, &[4]);
    }
}
