//! The human-facing files of an output directory: the dataset card `README.md`,
//! `CONTENT_PROVIDERS.txt`, and the copied upstream metadata files.
//!
//! All of them depend only on the inputs and options (no dates, paths or timings), so
//! they hash the same on every build.

use std::fmt::Write as _;

use super::format::CardRow;
use super::staging::Staging;
use super::{PackError, PackSummary, idx, images, npz, parquet};
use crate::config::PackOptions;
use crate::metadata::{Dataset, Split};

pub const README: &str = "README.md";
pub const CONTENT_PROVIDERS: &str = "CONTENT_PROVIDERS.txt";

/// Write the card, the provider list and the copied metadata; returns their paths.
pub fn write(
    staging: &Staging,
    dataset: &Dataset,
    opts: &PackOptions,
    summary: &PackSummary,
) -> Result<Vec<String>, PackError> {
    let mut produced = Vec::new();
    let mut put = |name: &str, text: &str| -> Result<(), PackError> {
        let path = staging.path(name)?;
        std::fs::write(&path, text).map_err(PackError::io(&path))?;
        produced.push(name.to_string());
        Ok(())
    };
    put(README, &readme(dataset, opts, summary))?;
    put(CONTENT_PROVIDERS, &content_providers(summary))?;
    for (name, text) in dataset.files.copied() {
        put(name, text)?;
    }
    Ok(produced)
}

fn content_providers(summary: &PackSummary) -> String {
    let mut s = String::new();
    s.push_str("Content providers of the KaoKore dataset images in this build\n");
    s.push_str("==============================================================\n\n");
    s.push_str("The images are face crops of works held and published (via IIIF) by:\n\n");
    for p in &summary.providers {
        let _ = writeln!(s, "- {} ({} images in this build)", p.provider, p.images);
    }
    let _ = write!(
        s,
        "\nAttribution: {}\nLicense: {} ({})\n\n{}\n",
        crate::ATTRIBUTION,
        crate::LICENSE,
        crate::LICENSE_URL,
        crate::REDISTRIBUTION_REQUEST
    );
    s
}

fn readme(dataset: &Dataset, opts: &PackOptions, summary: &PackSummary) -> String {
    let v = dataset.version.as_str();
    let size = opts.size;
    let f = &opts.formats;
    let total: u64 = summary.splits.iter().map(|s| s.packed).sum();
    let mut s = String::new();
    let _ = writeln!(s, "# KaoKore {v}, normalized to {size} x {size} RGB\n");
    let _ = writeln!(
        s,
        "> **Built for you; do not redistribute.** {}\n",
        crate::REDISTRIBUTION_REQUEST
    );
    let _ = writeln!(
        s,
        "Face crops from Japanese picture scrolls and illustrated books, with expert labels \
         for gender and social status, from the KaoKore dataset version {v}, built with \
         kaokore {}.\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "- Attribution: {}", crate::ATTRIBUTION);
    let _ = writeln!(s, "- License: {} ({})", crate::LICENSE, crate::LICENSE_URL);
    let _ = writeln!(s, "- DOI: https://doi.org/{}", crate::DOI);
    let _ = writeln!(s, "- Content providers: see `CONTENT_PROVIDERS.txt`\n");

    // Counts.
    let _ = writeln!(s, "## Contents\n");
    let _ = writeln!(
        s,
        "{total} labelled images in three splits; rows are in `labels.csv` order in every \
         format, so row i of the idx, npz and Parquet files of a split is the same image.\n"
    );
    let names = &dataset.class_names;
    let mut header = String::from("| split | images |");
    let mut rule = String::from("|---|---:|");
    for (i, n) in names.gender.iter().enumerate() {
        let _ = write!(header, " gender {i} ({n}) |");
        rule.push_str("---:|");
    }
    for (i, n) in names.status.iter().enumerate() {
        let _ = write!(header, " status {i} ({n}) |");
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for split in &summary.splits {
        let mut line = format!("| {} | {} |", split.split, split.packed);
        for c in split.gender.iter().chain(&split.status) {
            let _ = write!(line, " {} |", c.count);
        }
        let _ = writeln!(s, "{line}");
    }
    let missing = summary.missing.len() + summary.undecodable.len();
    if missing > 0 || summary.labelled_without_url > 0 {
        let _ = writeln!(
            s,
            "\nNot included: {} labelled images that could not be fetched or decoded and {} \
             labelled images without a URL upstream (see `report.json`).",
            missing, summary.labelled_without_url
        );
    }

    // Changes.
    let n = &summary.normalization;
    let _ = writeln!(s, "\n## Changes made to the images\n");
    let _ = writeln!(
        s,
        "Every image was decoded and normalized to {size} x {size} 8-bit RGB:\n\n\
         - grayscale, RGBA (alpha dropped), CMYK and 16-bit images converted to 8-bit RGB \
         ({} images{});\n\
         - images not already {size} x {size} resized with a Lanczos3 filter, stretched to \
         the square (not cropped or padded) ({} images);\n\
         - in Parquet, {} images are the fetched JPEG file unchanged (already {size} x {size} \
         RGB) and {} are the normalized pixels stored losslessly as PNG.\n",
        n.converted_from.values().sum::<u64>(),
        if n.converted_from.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = n
                .converted_from
                .iter()
                .map(|(layout, count)| format!("{count} {layout}"))
                .collect();
            format!(": {}", kinds.join(", "))
        },
        n.resized,
        n.stored_as_jpeg,
        n.stored_as_png
    );
    if f.contains("images") {
        let _ = writeln!(
            s,
            "In `{}/`, images that needed a change are JPEG (quality {}) of the normalized \
             pixels; the others are the fetched files.\n",
            images::images_dir_name(size),
            crate::encode::JPEG_QUALITY
        );
    }

    // Files and loading.
    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(s, "| file | content |\n|---|---|");
    // Each format's rows, split by split, then those of every split.
    let mut rows: Vec<CardRow> = f.iter().flat_map(|format| format.card_rows(size)).collect();
    rows.sort_by_key(|r| r.split.map_or(Split::ALL.len(), |s| s.index()));
    for row in rows {
        let _ = writeln!(s, "| `{}` | {} |", row.file, row.content);
    }
    let _ = writeln!(
        s,
        "| `labels.csv`, `original_tags.txt`, `labels.metadata.*.txt` | the upstream metadata, unchanged |\n\
         | `SHA256SUMS` | checksums: `sha256sum -c SHA256SUMS` |\n"
    );
    let _ = writeln!(
        s,
        "Class names: gender {}; status {}.\n",
        numbered(&names.gender),
        numbered(&names.status)
    );

    let _ = writeln!(s, "## Loading\n");
    if f.contains("npz") || f.contains("idx") {
        let _ = writeln!(s, "NumPy:\n\n```python\nimport numpy as np\n");
        if f.contains("npz") {
            let _ = writeln!(
                s,
                "images = np.load(\"{}\")[\"arr_0\"]  # (N, {size}, {size}, 3) uint8\n\
                 labels = np.load(\"{}\")\n\
                 gender, status, image_id = labels[\"gender\"], labels[\"status\"], labels[\"image_id\"]\n",
                npz::npz_images_name(Split::Train),
                npz::npz_labels_name(Split::Train)
            );
        }
        if f.contains("idx") {
            let _ = writeln!(
                s,
                "import gzip\n\n\
                 def read_idx(path):\n    \
                 with gzip.open(path) as f:\n        \
                 raw = f.read()\n    \
                 ndim = raw[3]\n    \
                 shape = np.frombuffer(raw, \">u4\", count=ndim, offset=4)\n    \
                 return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)\n\n\
                 images = read_idx(\"{}\")\n\
                 gender = read_idx(\"{}\")",
                idx::idx_images_name(Split::Train),
                idx::idx_labels_name(Split::Train, "gender")
            );
        }
        let _ = writeln!(s, "```\n");
    }
    if f.contains("parquet") {
        let train = parquet::parquet_name(Split::Train);
        let _ = writeln!(
            s,
            "pandas:\n\n```python\nimport io\nimport pandas as pd\nfrom PIL import Image\n\n\
             df = pd.read_parquet(\"{train}\")\n\
             first = Image.open(io.BytesIO(df[\"image\"][0][\"bytes\"]))\n```\n\n\
             polars:\n\n```python\nimport polars as pl\n\n\
             df = pl.read_parquet(\"{train}\")\n\
             df.select(\"image_id\", \"gender\", \"status\", pl.col(\"image\").struct.field(\"bytes\"))\n```\n\n\
             Hugging Face `datasets` (the files carry `Image` and `ClassLabel` features; \
             naming the files keeps the split names, while `data_dir=\"parquet\"` would \
             call `dev` `validation`):\n\n\
             ```python\nfrom datasets import load_dataset\n\n\
             ds = load_dataset(\"parquet\", data_files={{\n    \
             \"train\": \"parquet/train-*.parquet\",\n    \
             \"dev\": \"parquet/dev-*.parquet\",\n    \
             \"test\": \"parquet/test-*.parquet\",\n}})\n\
             ds[\"train\"][0][\"image\"]  # a PIL image\n\
             ds[\"train\"].features[\"gender\"].names  # {}\n```\n",
            serde_json::to_string(&names.gender).unwrap_or_default()
        );
    }

    let _ = writeln!(s, "## Citation\n\n{}\n", crate::CITATION);
    let _ = writeln!(
        s,
        "```bibtex\n@inproceedings{{tian2020kaokore,\n  \
         title     = {{KaoKore: A Pre-modern Japanese Art Facial Expression Dataset}},\n  \
         author    = {{Tian, Yingtao and Suzuki, Chikahiko and Clanuwat, Tarin and Bober-Irizar, Mikel and Lamb, Alex and Kitamoto, Asanobu}},\n  \
         booktitle = {{Proceedings of the International Conference on Computational Creativity (ICCC)}},\n  \
         pages     = {{415--422}},\n  \
         year      = {{2020}},\n  \
         eprint    = {{2002.08595}},\n  \
         archivePrefix = {{arXiv}}\n}}\n```\n"
    );
    let _ = writeln!(s, "Dataset: {}\n", crate::ATTRIBUTION);
    let _ = writeln!(s, "## Content providers\n");
    for p in &summary.providers {
        let _ = writeln!(s, "- {} ({} images)", p.provider, p.images);
    }
    s
}

fn numbered(names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} = {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
