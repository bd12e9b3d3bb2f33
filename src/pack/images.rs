//! Image files: `images_S/NNNNNNNN.jpg`, the layout of upstream's own download script (with
//! the size in the directory name). The fetched file when it already is an S x S RGB JPEG,
//! else a JPEG of the normalized pixels.

use super::staging::Staging;
use super::{FinishContext, FormatWriter, PackError, PackedRow, Stage};
use crate::config::PackOptions;

/// `images_S`
pub fn images_dir_name(size: u32) -> String {
    format!("images_{size}")
}

pub struct ImageFilesWriter {
    dir: String,
    root: std::path::PathBuf,
    produced: Vec<String>,
}

impl ImageFilesWriter {
    pub fn create(staging: &Staging, opts: &PackOptions) -> Result<ImageFilesWriter, PackError> {
        let dir = images_dir_name(opts.size);
        let root = staging.path(&format!("{dir}/.keep"))?;
        let root = root
            .parent()
            .ok_or(PackError::Internal("image directory has no parent"))?
            .to_path_buf();
        Ok(ImageFilesWriter {
            dir,
            root,
            produced: Vec::new(),
        })
    }
}

impl FormatWriter for ImageFilesWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let bytes = row
            .image_file
            .as_ref()
            .ok_or(PackError::Internal("image row without file bytes"))?;
        let name = row.record.id.file_name();
        let path = self.root.join(&name);
        std::fs::write(&path, bytes).map_err(PackError::io(&path))?;
        self.produced.push(format!("{}/{name}", self.dir));
        Ok(())
    }

    fn finish(self: Box<Self>, _ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        Ok(self.produced)
    }

    fn stage(&self) -> Stage {
        Stage::Images
    }
}
