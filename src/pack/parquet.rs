//! Parquet: `parquet/{split}-00000-of-00001.parquet`, one row per image with the image
//! file embedded, its labels and the parsed expert metadata, laid out as Hugging Face
//! `datasets` writes an Image + ClassLabel dataset, so `load_dataset("parquet", ...)`
//! yields those features.
//!
//! Row groups are small (about 100 rows) and flushed as they fill, so a split is never
//! held in memory; image bytes are stored uncompressed and without dictionary (they are
//! already compressed), the other columns with zstd.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use serde_json::{Value, json};

use super::PackOptions;
use super::card;
use super::croissant::{field, references, sourced};
use super::format::{
    CardChange, CardContext, CardRow, CroissantEntries, FileSink, Format, FormatOption, Payload,
    Snippet, WriteSeek, WriterContext,
};
use super::read::{
    Channels, HEADER_SLACK, PixelSource, Problems, RowLabels, RowRead, SplitAt, length,
    open_artifact,
};
use super::{FinishContext, FormatWriter, PackError, PackedRow};
use crate::metadata::{ClassNames, Dataset, Split};
use crate::normalize;

/// `parquet/{split}-00000-of-00001.parquet`
pub fn parquet_name(split: Split) -> String {
    format!("parquet/{split}-00000-of-00001.parquet")
}

/// The Parquet files.
pub(crate) struct Parquet;

impl Format for Parquet {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn about(&self) -> &'static str {
        "parquet/*.parquet: image file, labels and expert metadata per row"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::LosslessFile]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        Split::ALL.into_iter().map(parquet_name).collect()
    }

    fn card_rows(&self, _size: u32) -> Vec<CardRow> {
        Split::ALL
            .into_iter()
            .map(|split| CardRow {
                split: Some(split),
                file: parquet_name(split),
                content: "image file, labels and expert metadata per row".into(),
            })
            .collect()
    }

    fn croissant(&self, size: u32) -> CroissantEntries {
        CroissantEntries {
            file_sets: vec![json!({
                "@type": "cr:FileSet",
                "@id": PARQUET_FILES,
                "name": PARQUET_FILES,
                "description": "The Parquet files of every split (each also a FileObject above).",
                "encodingFormat": "application/x-parquet",
                "includes": "parquet/*.parquet",
            })],
            record_sets: vec![croissant_records(size)],
        }
    }

    fn options(&self) -> &'static [&'static FormatOption] {
        &[&ROW_GROUP_ROWS]
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/x-parquet"
    }

    fn card_changes(&self, ctx: &CardContext<'_>) -> Vec<CardChange> {
        let n = &ctx.summary.normalization;
        let size = ctx.opts.size;
        vec![CardChange::Item(format!(
            "in Parquet, {} images are the fetched JPEG file unchanged (already {size} x {size} \
             RGB) and {} are the normalized pixels stored losslessly as PNG",
            n.stored_as_jpeg, n.stored_as_png
        ))]
    }

    fn card_snippet(&self, ctx: &CardContext<'_>) -> Option<Snippet> {
        let train = parquet_name(Split::Train);
        Some(Snippet {
            rank: 3,
            group: "",
            preamble: "",
            code: format!(
                "pandas:\n\n```python\nimport io\nimport pandas as pd\nfrom PIL import Image\n\n\
                 df = pd.read_parquet(\"{train}\")\n\
                 first = Image.open(io.BytesIO(df[\"image\"][0][\"bytes\"]))\n```\n\n\
                 polars:\n\n```python\nimport polars as pl\n\n\
                 df = pl.read_parquet(\"{train}\")\n\
                 df.select(\"image_id\", \"gender\", \"status\", pl.col(\"image\").struct.field(\"bytes\"))\n```\n\n\
                 Hugging Face `datasets`: the YAML header of this card names the splits and \
                 the features (`Image`, `ClassLabel` with the class names), so the directory \
                 loads as it is. Upstream's `dev` split is called `validation` there, the \
                 Hub's name for it and the one `datasets` infers from `dev-*.parquet` files \
                 anyway; file names and `labels.csv` keep `dev`.\n\n\
                 ```python\nfrom datasets import load_dataset\n\n\
                 ds = load_dataset(\".\")  # the directory of this README.md: train, validation, test\n\
                 ds[\"train\"][0][\"image\"]  # a PIL image\n\
                 ds[\"train\"].features[\"gender\"].names  # {}\n```\n",
                serde_json::to_string(&ctx.dataset.class_names.gender).unwrap_or_default()
            ),
        })
    }

    fn hub_yaml(&self, ctx: &CardContext<'_>) -> Option<String> {
        Some(hub_yaml(ctx.dataset))
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(ParquetWriter::create(
            ctx.sink,
            ctx.dataset,
            ctx.opts,
        )?))
    }

    fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        let name = parquet_name(at.split);
        match ParquetRows::open(at, false) {
            Ok(mut reader) => {
                let labels = reader.labels(report);
                if labels.len() as u64 != at.rows {
                    report.problem(
                        &name,
                        None,
                        format!("{} rows, the build's record says {}", labels.len(), at.rows),
                    );
                }
                Some((name, labels))
            }
            Err(message) => {
                report.problem(&name, None, message);
                None
            }
        }
    }

    fn open_pixels(&self, at: &SplitAt<'_>, report: &mut Problems) -> Option<Box<dyn PixelSource>> {
        match ParquetRows::open(at, true) {
            Ok(reader) => Some(Box::new(ParquetPixels {
                rows: reader,
                size: at.size,
            })),
            Err(message) => {
                report.problem(&parquet_name(at.split), None, message);
                None
            }
        }
    }
}

/// `--row-group-rows`: rows per Parquet row group. Small groups let readers that fetch
/// ranges (the Hub viewer, DuckDB over HTTP) read a few images without the whole file.
pub(crate) const ROW_GROUP_ROWS: FormatOption = FormatOption {
    flag: "row-group-rows",
    value_name: "N",
    help: "Rows per Parquet row group",
    default: "100",
    parse: super::format::parse_count,
};

/// The card's Hub YAML for the Parquet files: `configs` with each split's files and
/// `dataset_info` with the features (Image, ClassLabel with the class names), so that
/// `datasets.load_dataset(OUT)` needs nothing else.
fn hub_yaml(dataset: &Dataset) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str("configs:\n- config_name: default\n  default: true\n  data_files:\n");
    for split in Split::ALL {
        let _ = writeln!(
            s,
            "  - split: {}\n    path: {}",
            card::hub_split(split),
            card::yaml_str(&format!("parquet/{}-*.parquet", split.name()))
        );
    }
    s.push_str("dataset_info:\n  config_name: default\n  features:\n");
    let names = &dataset.class_names;
    for f in arrow_schema().fields() {
        let name = f.name().as_str();
        let _ = writeln!(s, "  - name: {name}");
        let class_names = match name {
            "gender" => Some(&names.gender),
            "status" => Some(&names.status),
            _ => None,
        };
        let _ = match (class_names, f.data_type()) {
            (Some(classes), _) => {
                s.push_str("    dtype:\n      class_label:\n        names:\n");
                for (i, c) in classes.iter().enumerate() {
                    let _ = writeln!(s, "          '{i}': {}", card::yaml_str(c));
                }
                Ok(())
            }
            (None, arrow_schema::DataType::Struct(_)) => writeln!(s, "    dtype: image"),
            (None, arrow_schema::DataType::List(_)) => writeln!(s, "    sequence: string"),
            (None, arrow_schema::DataType::Int32) => writeln!(s, "    dtype: int32"),
            (None, arrow_schema::DataType::Int64) => writeln!(s, "    dtype: int64"),
            (None, _) => writeln!(s, "    dtype: string"),
        };
    }
    s
}

/// The `@id` of croissant.json's file set of every Parquet file (a record set reads one
/// source).
const PARQUET_FILES: &str = "parquet-files";

/// croissant.json's `images` record set: one record per Parquet row, every column.
fn croissant_records(size: u32) -> Value {
    const RS: &str = "images";
    let column = |name: &str, data_type: &str, description: &str| {
        sourced(
            field(RS, name, data_type, description),
            "fileSet",
            PARQUET_FILES,
            json!({"column": name}),
        )
    };
    let mut image = column(
        "image",
        "sc:ImageObject",
        &format!(
            "The image, {0} x {0} RGB: the fetched JPEG unchanged when it already was one, \
             else the normalized pixels as PNG.",
            size
        ),
    );
    image["source"]["transform"] = json!({"jsonPath": "bytes"});
    let mut split = sourced(
        field(RS, "split", "sc:Text", "Split, from the file name."),
        "fileSet",
        PARQUET_FILES,
        json!({"fileProperty": "filename"}),
    );
    split["source"]["transform"] = json!({"regex": "^(train|dev|test)-\\d+-of-\\d+\\.parquet$"});
    let mut tags = column("tags", "sc:Text", "The タグ values of original_tags.txt.");
    tags.insert("isArray".into(), json!(true));
    let mut fields = vec![
        image,
        column(
            "image_id",
            "sc:Integer",
            "Line number (0-based) in urls.txt.",
        ),
        references(
            column("gender", "sc:Integer", "Gender class index."),
            "gender/index",
        ),
        references(
            column("status", "sc:Integer", "Status class index."),
            "status/index",
        ),
        references(split, "splits/name"),
        column("url", "sc:URL", "The original upstream IIIF URL."),
        column(
            "provider",
            "sc:Text",
            "The content provider holding the work.",
        ),
    ];
    for (name, description) in [
        ("source_title", "原典 (source work title)."),
        ("source_id", "原典ID / DOI / record id of the source work."),
        ("orientation", "向き (face orientation)."),
        ("era", "制作年 (period of production)."),
        ("holder", "所蔵 (holding institution)."),
    ] {
        fields.push(column(name, "sc:Text", description));
    }
    fields.push(column(
        "year_from",
        "sc:Integer",
        "First year of 制作年, when stated.",
    ));
    fields.push(column(
        "year_to",
        "sc:Integer",
        "Last year of 制作年, when stated.",
    ));
    fields.push(tags);
    fields.push(column(
        "original_tags",
        "sc:Text",
        "The raw original_tags.txt line.",
    ));
    debug_assert_eq!(
        fields.len(),
        arrow_schema().fields().len() + 1,
        "one field per Parquet column, plus the split"
    );
    json!({
        "@type": "cr:RecordSet",
        "@id": RS,
        "name": RS,
        "description": "One record per packed image, from the Parquet files, in labels.csv \
                        order within each split.",
        "key": {"@id": format!("{RS}/image_id")},
        "field": fields,
    })
}

/// The fields of the `image` struct, as `datasets.Image` stores them.
fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

/// The Arrow schema of every Parquet file (nullable everywhere, as `datasets` writes it).
pub fn arrow_schema() -> SchemaRef {
    let string = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new("image_id", DataType::Int32, true),
        Field::new("gender", DataType::Int64, true),
        Field::new("status", DataType::Int64, true),
        string("url"),
        string("provider"),
        string("source_title"),
        string("source_id"),
        string("orientation"),
        string("era"),
        string("holder"),
        Field::new("year_from", DataType::Int32, true),
        Field::new("year_to", DataType::Int32, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        string("original_tags"),
    ]))
}

/// The `huggingface` metadata value: `{"info": {"features": {...}}}`, features in column
/// order (written by hand because key order matters to `datasets` and serde_json sorts).
pub fn huggingface_features(classes: &ClassNames) -> String {
    let value = |dtype: &str| format!(r#"{{"dtype": "{dtype}", "_type": "Value"}}"#);
    let class_label = |names: &[String]| {
        format!(
            r#"{{"names": {}, "_type": "ClassLabel"}}"#,
            serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
        )
    };
    let features: Vec<(&str, String)> = vec![
        ("image", r#"{"_type": "Image"}"#.to_string()),
        ("image_id", value("int32")),
        ("gender", class_label(&classes.gender)),
        ("status", class_label(&classes.status)),
        ("url", value("string")),
        ("provider", value("string")),
        ("source_title", value("string")),
        ("source_id", value("string")),
        ("orientation", value("string")),
        ("era", value("string")),
        ("holder", value("string")),
        ("year_from", value("int32")),
        ("year_to", value("int32")),
        (
            "tags",
            // `Sequence` (with `length`, which datasets 2.x requires) is read by every
            // datasets version; 4.x maps it to `List`, which 3.x would not understand.
            format!(
                r#"{{"feature": {}, "length": -1, "_type": "Sequence"}}"#,
                value("string")
            ),
        ),
        ("original_tags", value("string")),
    ];
    let body: Vec<String> = features
        .iter()
        .map(|(name, f)| format!(r#""{name}": {f}"#))
        .collect();
    format!(r#"{{"info": {{"features": {{{}}}}}}}"#, body.join(", "))
}

fn kaokore_metadata(dataset: &Dataset, opts: &PackOptions, split: Split) -> String {
    serde_json::json!({
        "dataset": "KaoKore",
        "dataset_version": dataset.version.as_str(),
        "split": split.name(),
        "size": opts.size,
        "doi": crate::DOI,
        "license": crate::LICENSE,
        "license_url": crate::LICENSE_URL,
        "attribution": crate::ATTRIBUTION,
        "redistribution": crate::REDISTRIBUTION_REQUEST,
        "created_by": format!("kaokore {}", env!("CARGO_PKG_VERSION")),
    })
    .to_string()
}

/// One buffered row, owned until its row group is written.
struct Row {
    image_bytes: Vec<u8>,
    image_path: String,
    image_id: i32,
    gender: i64,
    status: i64,
    url: Option<String>,
    provider: Option<&'static str>,
    source_title: Option<String>,
    source_id: Option<String>,
    orientation: Option<String>,
    era: Option<String>,
    holder: Option<String>,
    year_from: Option<i32>,
    year_to: Option<i32>,
    tags: Vec<String>,
    original_tags: Option<String>,
}

struct SplitFile {
    name: String,
    /// The Arrow schema with this file's `huggingface` and `kaokore` metadata.
    schema: SchemaRef,
    writer: ArrowWriter<BufWriter<Box<dyn WriteSeek>>>,
    rows: Vec<Row>,
}

pub(crate) struct ParquetWriter {
    row_group_rows: usize,
    splits: Vec<SplitFile>,
}

impl ParquetWriter {
    pub fn create(
        sink: &dyn FileSink,
        dataset: &Dataset,
        opts: &PackOptions,
    ) -> Result<ParquetWriter, PackError> {
        let hf = huggingface_features(&dataset.class_names);
        let image_bytes = ColumnPath::new(vec!["image".into(), "bytes".into()]);
        let mut splits = Vec::new();
        for split in Split::ALL {
            let name = parquet_name(split);
            let file = sink.create(&name)?;
            let kaokore = kaokore_metadata(dataset, opts, split);
            // The same keys go into the file's key-value metadata (read by Spark, DuckDB,
            // parquet-rs) and into the embedded Arrow schema, whose metadata is what
            // pyarrow, and so `datasets`, sees: it takes the stored Arrow schema over the
            // file's key-value pairs.
            let metadata = std::collections::HashMap::from([
                ("huggingface".to_string(), hf.clone()),
                ("kaokore".to_string(), kaokore.clone()),
            ]);
            let schema = Arc::new(arrow_schema().as_ref().clone().with_metadata(metadata));
            let props = WriterProperties::builder()
                .set_created_by(format!("kaokore {}", env!("CARGO_PKG_VERSION")))
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(opts.option(&ROW_GROUP_ROWS) as usize))
                .set_column_compression(image_bytes.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(image_bytes.clone(), false)
                .set_column_statistics_enabled(image_bytes.clone(), EnabledStatistics::None)
                .set_key_value_metadata(Some(vec![
                    KeyValue::new("huggingface".into(), hf.clone()),
                    KeyValue::new("kaokore".into(), kaokore.clone()),
                ]))
                .build();
            let writer = ArrowWriter::try_new(
                BufWriter::with_capacity(1 << 20, file),
                schema.clone(),
                Some(props),
            )
            .map_err(|e| PackError::Parquet {
                path: name.clone(),
                message: e.to_string(),
            })?;
            splits.push(SplitFile {
                name,
                schema,
                writer,
                rows: Vec::new(),
            });
        }
        Ok(ParquetWriter {
            row_group_rows: opts.option(&ROW_GROUP_ROWS) as usize,
            splits,
        })
    }
}

impl SplitFile {
    /// Write the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), PackError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| PackError::Parquet {
            path: self.name.clone(),
            message: e.to_string(),
        };
        let batch = record_batch(&self.schema, &self.rows).map_err(|e| err(&e))?;
        self.writer.write(&batch).map_err(|e| err(&e))?;
        self.writer.flush().map_err(|e| err(&e))?;
        self.rows.clear();
        Ok(())
    }
}

fn record_batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let mut bytes = BinaryBuilder::with_capacity(n, rows.iter().map(|r| r.image_bytes.len()).sum());
    let mut path = StringBuilder::new();
    let mut image_id = Int32Builder::with_capacity(n);
    let mut gender = Int64Builder::with_capacity(n);
    let mut status = Int64Builder::with_capacity(n);
    let mut strings: [StringBuilder; 8] = std::array::from_fn(|_| StringBuilder::new());
    let mut year_from = Int32Builder::with_capacity(n);
    let mut year_to = Int32Builder::with_capacity(n);
    let mut tags = ListBuilder::new(StringBuilder::new());
    for r in rows {
        bytes.append_value(&r.image_bytes);
        path.append_value(&r.image_path);
        image_id.append_value(r.image_id);
        gender.append_value(r.gender);
        status.append_value(r.status);
        let texts = [
            r.url.as_deref(),
            r.provider,
            r.source_title.as_deref(),
            r.source_id.as_deref(),
            r.orientation.as_deref(),
            r.era.as_deref(),
            r.holder.as_deref(),
            r.original_tags.as_deref(),
        ];
        for (b, t) in strings.iter_mut().zip(texts) {
            b.append_option(t);
        }
        year_from.append_option(r.year_from);
        year_to.append_option(r.year_to);
        for t in &r.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let image = StructArray::try_new(
        image_fields(),
        vec![
            Arc::new(bytes.finish()) as ArrayRef,
            Arc::new(path.finish()),
        ],
        None,
    )?;
    let [
        url,
        provider,
        source_title,
        source_id,
        orientation,
        era,
        holder,
        original_tags,
    ] = strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(image),
            Arc::new(image_id.finish()),
            Arc::new(gender.finish()),
            Arc::new(status.finish()),
            url,
            provider,
            source_title,
            source_id,
            orientation,
            era,
            holder,
            Arc::new(year_from.finish()),
            Arc::new(year_to.finish()),
            Arc::new(tags.finish()),
            original_tags,
        ],
    )
}

impl FormatWriter for ParquetWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let stored = row.payloads.lossless()?;
        let tags = row.record.tags.as_ref();
        let text =
            |f: fn(&crate::metadata::Tags) -> &Option<String>| tags.and_then(|t| f(t).clone());
        let split = &mut self.splits[row.split.index()];
        split.rows.push(Row {
            image_bytes: stored.bytes.clone(),
            image_path: row.record.id.file_name_with(stored.extension),
            image_id: row.record.id.0 as i32,
            gender: i64::from(row.label.gender),
            status: i64::from(row.label.status),
            url: row.record.url.clone(),
            provider: row.record.provider().map(|p| p.name()),
            source_title: text(|t| &t.source_title),
            source_id: text(|t| &t.source_id),
            orientation: text(|t| &t.orientation),
            era: text(|t| &t.era),
            holder: text(|t| &t.holder),
            year_from: tags.and_then(|t| t.year_from),
            year_to: tags.and_then(|t| t.year_to),
            tags: tags.map(|t| t.tags.clone()).unwrap_or_default(),
            original_tags: tags.map(|t| t.raw.clone()),
        });
        if split.rows.len() >= self.row_group_rows {
            split.flush()?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let mut produced = Vec::new();
        for mut split in self.splits {
            split.flush()?;
            let name = split.name.clone();
            let mut file = split
                .writer
                .into_inner()
                .map_err(|e| PackError::Parquet {
                    path: name.clone(),
                    message: e.to_string(),
                })?
                .into_inner()
                .map_err(|e| PackError::Parquet {
                    path: name.clone(),
                    message: e.error().to_string(),
                })?;
            // Flushed; not synced to disk.
            file.flush().map_err(PackError::io(&name))?;
            produced.push(name);
        }
        Ok(produced)
    }
}

// Reading, for verify.

/// Rows of a Parquet split, streamed one record batch at a time.
struct ParquetRows {
    name: String,
    reader: ParquetRecordBatchReader,
    batch: Option<RecordBatch>,
    next: usize,
}

/// What a Parquet file's metadata states, checked before a row is read: the record's row
/// count and size, column chunks inside the file, and no more decompressed bytes per row
/// group than its rows can need (an image is at most twice its raw pixels, whatever its
/// encoding, plus a generous allowance for the text columns), so the reader allocates no
/// more than that.
fn check_parquet_metadata(
    meta: &ParquetMetaData,
    file_len: u64,
    rows: u64,
    size: u32,
) -> Result<(), String> {
    let stated = meta.file_metadata().num_rows();
    if u64::try_from(stated).ok() != Some(rows) {
        return Err(format!(
            "metadata says {stated} rows, the build's record says {rows}"
        ));
    }
    let kaokore_size = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "kaokore"))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["size"].as_u64());
    if kaokore_size != Some(u64::from(size)) {
        return Err(format!(
            "kaokore metadata says size {kaokore_size:?}, the build's record says {size}"
        ));
    }
    let per_row = 2 * 3 * u64::from(size) * u64::from(size) + (1 << 20);
    for (i, group) in meta.row_groups().iter().enumerate() {
        let group_rows = u64::try_from(group.num_rows()).unwrap_or(u64::MAX);
        let mut decompressed: u64 = 0;
        for column in group.columns() {
            let (start, length) = column.byte_range();
            if start.saturating_add(length) > file_len {
                return Err(format!(
                    "row group {i}: a column chunk lies beyond the file's {file_len} bytes"
                ));
            }
            decompressed = decompressed
                .saturating_add(u64::try_from(column.uncompressed_size()).unwrap_or(u64::MAX));
        }
        if decompressed
            > group_rows
                .saturating_mul(per_row)
                .saturating_add(HEADER_SLACK)
        {
            return Err(format!(
                "row group {i}: {decompressed} bytes decompressed for {group_rows} rows is more than rows of size {size} can need"
            ));
        }
    }
    Ok(())
}

/// One Parquet row: the image bytes and its labels.
struct ParquetRow {
    image: Option<Vec<u8>>,
    labels: RowLabels,
}

impl ParquetRows {
    /// Open a split; without `with_image`, only the label columns are read. The file's
    /// metadata is checked against the record and the file's size first.
    fn open(at: &SplitAt<'_>, with_image: bool) -> Result<ParquetRows, String> {
        let file = open_artifact(at.dir, &parquet_name(at.split))?;
        let len = length(&file)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        check_parquet_metadata(builder.metadata(), len, at.rows, at.size)?;
        let schema = builder.schema().clone();
        for column in ["image", "image_id", "gender", "status"] {
            if schema.index_of(column).is_err() {
                return Err(format!("no column '{column}'"));
            }
        }
        let builder = if with_image {
            builder
        } else {
            let mask =
                ProjectionMask::columns(builder.parquet_schema(), ["image_id", "gender", "status"]);
            builder.with_projection(mask)
        };
        let reader = builder
            .with_batch_size(64)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ParquetRows {
            name: parquet_name(at.split),
            reader,
            batch: None,
            next: 0,
        })
    }

    fn next_row(&mut self, with_image: bool) -> Option<Result<ParquetRow, String>> {
        loop {
            if let Some(batch) = &self.batch
                && self.next < batch.num_rows()
            {
                let r = self.next;
                self.next += 1;
                return Some(Self::row(batch, r, with_image));
            }
            match self.reader.next()? {
                Ok(batch) => {
                    self.batch = Some(batch);
                    self.next = 0;
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }

    fn row(batch: &RecordBatch, r: usize, with_image: bool) -> Result<ParquetRow, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column '{name}'"))
        };
        let id = column("image_id")?
            .as_primitive_opt::<Int32Type>()
            .ok_or("image_id is not int32")?;
        let gender = column("gender")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("gender is not int64")?;
        let status = column("status")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("status is not int64")?;
        let image = if with_image {
            let bytes = column("image")?
                .as_struct_opt()
                .ok_or("column 'image' is not a struct")?
                .column_by_name("bytes")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or("image.bytes is not binary")?;
            bytes.is_valid(r).then(|| bytes.value(r).to_vec())
        } else {
            None
        };
        Ok(ParquetRow {
            image,
            labels: RowLabels {
                image_id: id
                    .is_valid(r)
                    .then(|| u32::try_from(id.value(r)).ok())
                    .flatten(),
                gender: u8::try_from(gender.value(r)).unwrap_or(u8::MAX),
                status: u8::try_from(status.value(r)).unwrap_or(u8::MAX),
            },
        })
    }

    /// All rows' labels (reads the file once, without keeping images).
    fn labels(&mut self, report: &mut Problems) -> Vec<RowLabels> {
        let mut out = Vec::new();
        while let Some(row) = self.next_row(false) {
            match row {
                Ok(row) => out.push(row.labels),
                Err(e) => {
                    report.problem(&self.name, Some(out.len() as u64), e);
                    break;
                }
            }
        }
        out
    }
}

/// A split's images, each decoded and normalized exactly as pack did: the pixels of a
/// row stored unchanged or losslessly, which the other formats must match.
struct ParquetPixels {
    rows: ParquetRows,
    size: u32,
}

impl PixelSource for ParquetPixels {
    fn name(&self) -> &str {
        &self.rows.name
    }

    fn channels(&self) -> Channels {
        Channels::Rgb
    }

    fn read_row(&mut self, buf: &mut Vec<u8>) -> RowRead {
        let size = self.size;
        match self.rows.next_row(true) {
            None => RowRead::Broken("fewer rows than the other formats".into()),
            Some(Err(e)) => RowRead::Broken(e),
            Some(Ok(row)) => match &row.image {
                None => RowRead::Bad("no image bytes".into()),
                Some(bytes) => match normalize::normalize(bytes, size) {
                    Err(e) => RowRead::Bad(format!("image does not decode: {e}")),
                    Ok(img) if img.resized => RowRead::Bad(format!(
                        "image is {} x {}, not {size} x {size}",
                        img.source.width, img.source.height
                    )),
                    Ok(img) => {
                        *buf = img.pixels;
                        RowRead::Pixels
                    }
                },
            },
        }
    }

    fn check_end(&mut self) -> Result<(), String> {
        // The row count was checked when the labels were read.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::format::testing::{self, SIZE};
    use arrow_array::types::Int32Type;
    use parquet::basic::Encoding;

    /// The test rows' Parquet files, in row groups of two rows, read back with parquet's
    /// own reader (from a file: it reads memory only as `bytes::Bytes`, not a dependency
    /// here): layout and metadata as `datasets` and the Hub expect, every column of every
    /// row, and verify's readers agreeing.
    #[test]
    fn rows_are_written_in_small_row_groups_with_every_column() {
        let dataset = testing::dataset();
        let mut opts = testing::options("parquet");
        opts.set_option(&ROW_GROUP_ROWS, 2);
        let w = testing::write(&Parquet, &dataset, &opts, &[]);
        w.check_files();
        assert_eq!(w.produced, Parquet.files(SIZE));
        assert!(w.hashed.is_empty(), "hashed at commit");
        let dir = w.on_disk();
        let listed = w.listed();
        for split in Split::ALL {
            let rows = testing::rows(&dataset, split, &[]);
            let name = parquet_name(split);
            let file = std::fs::File::open(dir.path().join(&name)).unwrap();
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();

            let meta = builder.metadata().clone();
            let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
            let expected: Vec<i64> = rows.chunks(2).map(|c| c.len() as i64).collect();
            assert_eq!(groups, expected, "{name}");
            for group in meta.row_groups() {
                for column in group.columns() {
                    let path = column.column_path().string();
                    let (compression, dictionary_allowed) = match path.as_str() {
                        "image.bytes" => (Compression::UNCOMPRESSED, false),
                        _ => (Compression::ZSTD(ZstdLevel::default()), true),
                    };
                    assert_eq!(column.compression(), compression, "{path}");
                    let dictionary_used = column.encodings().any(|e| {
                        matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
                    });
                    assert!(dictionary_allowed || !dictionary_used, "{path}");
                }
            }
            // The keys go into the file's metadata and into the Arrow schema pyarrow reads.
            let kv = meta.file_metadata().key_value_metadata().unwrap();
            let value = |key: &str| {
                kv.iter()
                    .find(|e| e.key == key)
                    .and_then(|e| e.value.clone())
                    .unwrap()
            };
            let hf = huggingface_features(&dataset.class_names);
            assert_eq!(value("huggingface"), hf);
            let kaokore: Value = serde_json::from_str(&value("kaokore")).unwrap();
            assert_eq!(
                (kaokore["split"].as_str(), kaokore["size"].as_u64()),
                (Some(split.name()), Some(u64::from(SIZE)))
            );
            assert_eq!(builder.schema().metadata()["huggingface"], hf);
            assert_eq!(builder.schema().fields(), arrow_schema().fields());

            let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
            let read: Vec<(usize, &RecordBatch)> = batches
                .iter()
                .flat_map(|b| (0..b.num_rows()).map(move |i| (i, b)))
                .collect();
            assert_eq!(read.len(), rows.len());
            for (record, (i, batch)) in rows.iter().zip(read) {
                let column = |name: &str| batch.column_by_name(name).unwrap();
                let text = |name: &str| {
                    let c = column(name).as_string::<i32>();
                    c.is_valid(i).then(|| c.value(i).to_string())
                };
                let int = |name: &str| {
                    let c = column(name).as_primitive::<Int32Type>();
                    c.is_valid(i).then(|| c.value(i))
                };
                let image = column("image").as_struct();
                let bytes = image.column_by_name("bytes").unwrap().as_binary::<i32>();
                let id = record.id.0;
                let png = crate::encode::encode_png(&testing::pixels(id), SIZE).unwrap();
                assert!(bytes.value(i) == png);
                let path = image.column_by_name("path").unwrap().as_string::<i32>();
                assert_eq!(path.value(i), format!("{id:08}.png"));
                assert_eq!(int("image_id"), Some(id as i32));
                let label = record.label.unwrap();
                let long = |name: &str| column(name).as_primitive::<Int64Type>().value(i);
                assert_eq!(
                    (long("gender"), long("status")),
                    (i64::from(label.gender), i64::from(label.status))
                );
                assert_eq!(text("url"), record.url.clone());
                assert_eq!(
                    text("provider").as_deref(),
                    record.provider().map(|p| p.name())
                );
                let tags = column("tags").as_list::<i32>().value(i);
                let tags: Vec<&str> = tags.as_string::<i32>().iter().map(Option::unwrap).collect();
                if id == 4 {
                    assert_eq!(text("source_title").as_deref(), Some("絵巻"));
                    assert_eq!(text("source_id").as_deref(), Some("10.20730/100"));
                    assert_eq!(text("orientation").as_deref(), Some("右"));
                    assert_eq!(text("era").as_deref(), Some("江戸前期"));
                    assert_eq!(text("holder").as_deref(), Some("文庫"));
                    assert_eq!((int("year_from"), int("year_to")), (Some(1600), Some(1650)));
                    assert_eq!(tags, ["烏帽子", "扇"]);
                    assert!(text("original_tags").unwrap().starts_with("原典=絵巻;"));
                } else {
                    for name in ["source_title", "source_id", "era", "original_tags"] {
                        assert_eq!(text(name), None, "{name}");
                    }
                    assert_eq!((int("year_from"), int("year_to")), (None, None));
                    assert!(tags.is_empty());
                }
            }

            let n = rows.len();
            let at = testing::split_at(dir.path(), &listed, split, n as u64, None);
            let mut problems = Problems::default();
            let (_, labels) = Parquet.read_labels(&at, &mut problems).unwrap();
            let ids: Vec<Option<u32>> = labels.iter().map(|l| l.image_id).collect();
            assert_eq!(ids, rows.iter().map(|r| Some(r.id.0)).collect::<Vec<_>>());
            let pixels: Vec<Vec<u8>> = rows.iter().map(|r| testing::pixels(r.id.0)).collect();
            let source = Parquet.open_pixels(&at, &mut problems).unwrap();
            assert!(testing::read_all(source, n) == pixels);
            assert!(problems.is_empty(), "{:?}", &problems[..]);
        }
    }
}
