//! Image files: `images_S/NNNNNNNN.jpg`, the layout of upstream's own download script (with
//! the size in the directory name). The fetched file when it already is an S x S RGB JPEG,
//! else a JPEG of the normalized pixels.

use std::io::Write;

use serde_json::json;

use super::croissant::{field, sourced};
use super::format::{
    CardChange, CardContext, CardRow, CroissantEntries, FileSink, Format, Payload, WriterContext,
};
use super::read::{Channels, LabelsOrder, PixelSource, Problems, RowRead, SplitAt};
use super::{FinishContext, FormatWriter, PackError, PackedRow};

/// The largest image file verify reads: the memory fetch gives all bodies at once.
const MAX_FILE_BYTES: u64 = crate::fetch::BODY_MEMORY;

/// The `@id` of croissant.json's file set of `images_S/`.
const IMAGE_FILES: &str = "image-files";

/// `images_S`
pub fn images_dir_name(size: u32) -> String {
    format!("images_{size}")
}

/// One JPEG file per image. verify checks each against the RGB rows of the other formats,
/// as it does WebDataset's image members (see [`PixelSource::jpeg_files`]).
pub(crate) struct Images;

impl Format for Images {
    fn name(&self) -> &'static str {
        "images"
    }

    fn about(&self) -> &'static str {
        "images_S/NNNNNNNN.jpg: one JPEG per image, the layout of upstream's loader"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::JpegFile]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        Vec::new() // one per packed image: see `listed_files`
    }

    fn dirs(&self, size: u32) -> Vec<String> {
        vec![images_dir_name(size)]
    }

    fn listed_files(&self, size: u32, listed: &[String]) -> Result<Vec<String>, String> {
        let prefix = format!("{}/", images_dir_name(size));
        let mut files = Vec::new();
        for f in listed.iter().filter(|f| f.starts_with(&prefix)) {
            let name = &f[prefix.len()..];
            let digits = name.strip_suffix(".jpg").unwrap_or("");
            if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("lists {f:?}, not an image file of {prefix}"));
            }
            files.push(f.clone());
        }
        Ok(files)
    }

    fn listed_ids(&self, at: &SplitAt<'_>, order: &LabelsOrder) -> Option<Vec<u32>> {
        // Its files are named by image id: those the record lists, in labels.csv order.
        let dir = images_dir_name(at.size);
        let mut rows: Vec<(u64, u32)> = order
            .rows
            .iter()
            .filter(|(id, (_, _, _, split))| {
                *split == at.split && at.files.contains(&format!("{dir}/{id:08}.jpg"))
            })
            .map(|(&id, &(line, ..))| (line, id))
            .collect();
        rows.sort_unstable();
        Some(rows.into_iter().map(|(_, id)| id).collect())
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "image/jpeg"
    }

    fn card_changes(&self, ctx: &CardContext<'_>) -> Vec<CardChange> {
        vec![CardChange::Note(format!(
            "In `{}/`, images that needed a change are JPEG (quality {}) of the normalized \
             pixels; the others are the fetched files.\n",
            images_dir_name(ctx.opts.size),
            crate::encode::JPEG_QUALITY
        ))]
    }

    fn card_rows(&self, size: u32) -> Vec<CardRow> {
        vec![CardRow {
            split: None,
            file: format!("{}/NNNNNNNN.jpg", images_dir_name(size)),
            content: "one file per image, named as upstream".into(),
        }]
    }

    fn croissant(&self, size: u32) -> CroissantEntries {
        let dir = images_dir_name(size);
        let file = |name: &str, property: &str, data_type: &str, description: &str| {
            sourced(
                field("image_files", name, data_type, description),
                "fileSet",
                IMAGE_FILES,
                json!({"fileProperty": property}),
            )
        };
        CroissantEntries {
            file_sets: vec![json!({
                "@type": "cr:FileSet",
                "@id": IMAGE_FILES,
                "name": IMAGE_FILES,
                "description": "One JPEG per packed image, named as upstream (their SHA-256s are in SHA256SUMS).",
                "encodingFormat": "image/jpeg",
                "includes": format!("{dir}/*.jpg"),
            })],
            record_sets: vec![json!({
                "@type": "cr:RecordSet",
                "@id": "image_files",
                "name": "image_files",
                "description": format!("The files of {dir}/."),
                "key": {"@id": "image_files/name"},
                "field": [
                    file("name", "filename", "sc:Text", "NNNNNNNN.jpg, as in labels.csv's `image` column."),
                    file("image", "content", "sc:ImageObject", "The image."),
                ],
            })],
        }
    }

    fn file_objects(&self) -> bool {
        false // a file per image: one FileSet
    }

    fn open_pixels(
        &self,
        at: &SplitAt<'_>,
        _report: &mut Problems,
    ) -> Option<Box<dyn PixelSource>> {
        // Without ids there is no row order to read the files in (the record's listing was
        // checked against SHA256SUMS).
        let ids = at.ids?.to_vec();
        Some(Box::new(ImageFiles {
            dir: at.dir.to_path_buf(),
            prefix: images_dir_name(at.size),
            ids: ids.into_iter(),
            current: String::new(),
        }))
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(ImageFilesWriter {
            sink: ctx.sink,
            dir: images_dir_name(ctx.opts.size),
            produced: Vec::new(),
        }))
    }
}

/// Writes each row's file as it arrives.
struct ImageFilesWriter<'a> {
    sink: &'a dyn FileSink,
    dir: String,
    produced: Vec<String>,
}

impl FormatWriter for ImageFilesWriter<'_> {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let bytes = row.payloads.jpeg()?;
        let name = format!("{}/{}", self.dir, row.record.id.file_name());
        let mut file = self.sink.create(&name)?;
        file.write_all(bytes)
            .and_then(|()| file.flush())
            .map_err(PackError::io(&name))?;
        self.produced.push(name);
        Ok(())
    }

    fn finish(self: Box<Self>, _ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        Ok(self.produced)
    }
}

/// A split's image files in row order, for verify to compare with the other formats' rows.
struct ImageFiles {
    dir: std::path::PathBuf,
    prefix: String,
    ids: std::vec::IntoIter<u32>,
    /// The file of the row read last, for problems.
    current: String,
}

impl PixelSource for ImageFiles {
    fn name(&self) -> &str {
        &self.current
    }

    fn channels(&self) -> Channels {
        Channels::Rgb
    }

    fn jpeg_files(&self) -> bool {
        true
    }

    fn read_row(&mut self, buf: &mut Vec<u8>) -> RowRead {
        use std::io::Read;
        let Some(id) = self.ids.next() else {
            return RowRead::Broken("fewer rows than the build's record says".into());
        };
        self.current = format!("{}/{id:08}.jpg", self.prefix);
        let file = match super::read::open_artifact(&self.dir, &self.current) {
            Ok(f) => f,
            Err(e) => return RowRead::Bad(e),
        };
        match super::read::length(&file) {
            Ok(len) if len > MAX_FILE_BYTES => {
                return RowRead::Bad(format!("{len} bytes: larger than any image kaokore stores"));
            }
            Ok(_) => {}
            Err(e) => return RowRead::Bad(e),
        }
        buf.clear();
        match file.take(MAX_FILE_BYTES).read_to_end(buf) {
            Ok(_) => RowRead::Pixels,
            Err(e) => RowRead::Bad(format!("cannot read: {e}")),
        }
    }

    fn check_end(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Split;
    use crate::pack::format::testing::{self, SIZE};

    #[test]
    fn each_row_is_one_jpeg_file_named_by_its_image_id() {
        let dataset = testing::dataset();
        let missing = [5];
        let w = testing::write(&Images, &dataset, &testing::options("images"), &missing);
        w.check_files();
        assert!(w.hashed.is_empty(), "hashed at commit");
        // One file per packed row, in row order (labels.csv's, not the ids').
        let packed: Vec<u32> = dataset
            .packable()
            .map(|r| r.id.0)
            .filter(|id| !missing.contains(id))
            .collect();
        let names: Vec<String> = packed
            .iter()
            .map(|id| format!("images_{SIZE}/{id:08}.jpg"))
            .collect();
        assert_eq!(w.produced, names);
        for (id, name) in packed.iter().zip(&names) {
            let jpeg = crate::encode::encode_jpeg(&testing::pixels(*id), SIZE).unwrap();
            assert!(w.sink.bytes(name) == jpeg, "{name}");
        }
        assert_eq!(Images.listed_files(SIZE, &w.produced), Ok(names));

        // verify finds each split's rows from labels.csv's order and the listed files.
        let dir = w.on_disk();
        let listed = w.listed();
        let order = LabelsOrder {
            rows: dataset
                .labelled
                .iter()
                .enumerate()
                .map(|(line, id)| {
                    let l = dataset.record(*id).label.unwrap();
                    (id.0, (line as u64 + 2, l.gender, l.status, l.split))
                })
                .collect(),
        };
        for split in Split::ALL {
            let rows = testing::rows(&dataset, split, &missing);
            let ids: Vec<u32> = rows.iter().map(|r| r.id.0).collect();
            let at = testing::split_at(dir.path(), &listed, split, ids.len() as u64, None);
            assert_eq!(Images.listed_ids(&at, &order), Some(ids.clone()));
            let at = SplitAt {
                ids: Some(&ids),
                ..at
            };
            let mut problems = Problems::default();
            let source = Images.open_pixels(&at, &mut problems).unwrap();
            assert!(source.jpeg_files());
            let files: Vec<Vec<u8>> = ids
                .iter()
                .map(|id| crate::encode::encode_jpeg(&testing::pixels(*id), SIZE).unwrap())
                .collect();
            assert!(testing::read_all(source, ids.len()) == files);
            assert!(problems.is_empty(), "{:?}", &problems[..]);
        }
    }
}
