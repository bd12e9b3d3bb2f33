//! Parquet: `parquet/{split}-00000-of-00001.parquet`, one row per image with the image
//! file embedded, its labels and the parsed expert metadata, laid out as Hugging Face
//! `datasets` writes an Image + ClassLabel dataset, so `load_dataset("parquet", ...)`
//! yields those features.
//!
//! Row groups are small (about 100 rows) and flushed as they fill, so a split is never
//! held in memory; image bytes are stored uncompressed and without dictionary (they are
//! already compressed), the other columns with zstd.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{FinishContext, FormatWriter, PackError, PackedRow, Stage};
use crate::config::PackOptions;
use crate::metadata::{ClassNames, Dataset, Split};

/// `parquet/{split}-00000-of-00001.parquet`
pub fn parquet_name(split: Split) -> String {
    format!("parquet/{split}-00000-of-00001.parquet")
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
    writer: ArrowWriter<BufWriter<File>>,
    rows: Vec<Row>,
}

pub struct ParquetWriter {
    row_group_rows: usize,
    splits: Vec<SplitFile>,
}

impl ParquetWriter {
    pub fn create(
        staging: &super::staging::Staging,
        dataset: &Dataset,
        opts: &PackOptions,
    ) -> Result<ParquetWriter, PackError> {
        let hf = huggingface_features(&dataset.class_names);
        let image_bytes = ColumnPath::new(vec!["image".into(), "bytes".into()]);
        let mut splits = Vec::new();
        for split in Split::ALL {
            let name = parquet_name(split);
            let path = staging.path(&name)?;
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
                .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
                .set_column_compression(image_bytes.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(image_bytes.clone(), false)
                .set_column_statistics_enabled(image_bytes.clone(), EnabledStatistics::None)
                .set_key_value_metadata(Some(vec![
                    KeyValue::new("huggingface".into(), hf.clone()),
                    KeyValue::new("kaokore".into(), kaokore.clone()),
                ]))
                .build();
            let file = File::create(&path).map_err(PackError::io(&path))?;
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
            row_group_rows: opts.row_group_rows.max(1),
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
        let stored = row
            .stored
            .as_ref()
            .ok_or(PackError::Internal("Parquet row without image bytes"))?;
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
            let file = split
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
            // Flushed; not synced to disk (see the staging module).
            drop(file);
            produced.push(name);
        }
        Ok(produced)
    }

    fn stage(&self) -> Stage {
        Stage::Parquet
    }
}
