//! `croissant.json`: the build described in Croissant 1.1, MLCommons' JSON-LD vocabulary
//! for ML datasets, so that tools which read Croissant (mlcroissant, dataset search, the
//! Hub) find the licence, citation, files, class names and splits without glue.
//!
//! It lists every artifact with its SHA-256, so it is written at commit, once the others
//! are hashed (see [`crate::out::Staging::prepare`]); it cannot list itself, nor
//! SHA256SUMS, which lists it. Like the card it depends only on the inputs and options:
//! no dates, paths or timings. The class names live in enumeration record sets that the
//! gender and status fields reference, where the Hub's generated Croissant has plain
//! integers.

use serde_json::{Map, Value, json};

use super::PackOptions;
use super::{Artifact, PackSummary, card};
use crate::metadata::{Dataset, Provider, Split};

/// Croissant's own `@context`, as mlcroissant 1.1 writes it: a different one validates,
/// with a warning.
fn context() -> Value {
    let cr = |term: &str| Value::String(format!("cr:{term}"));
    let mut c = Map::new();
    c.insert("@language".into(), json!("en"));
    c.insert("@vocab".into(), json!("https://schema.org/"));
    c.insert("cr".into(), json!("http://mlcommons.org/croissant/"));
    c.insert("rai".into(), json!("http://mlcommons.org/croissant/RAI/"));
    c.insert("dct".into(), json!("http://purl.org/dc/terms/"));
    c.insert("sc".into(), json!("https://schema.org/"));
    c.insert("conformsTo".into(), json!("dct:conformsTo"));
    c.insert("data".into(), json!({"@id": "cr:data", "@type": "@json"}));
    c.insert(
        "dataType".into(),
        json!({"@id": "cr:dataType", "@type": "@vocab"}),
    );
    c.insert(
        "examples".into(),
        json!({"@id": "cr:examples", "@type": "@json"}),
    );
    for term in [
        "arrayShape",
        "citeAs",
        "column",
        "containedIn",
        "equivalentProperty",
        "extract",
        "field",
        "fileObject",
        "fileProperty",
        "fileSet",
        "format",
        "includes",
        "isArray",
        "isLiveDataset",
        "jsonPath",
        "key",
        "md5",
        "parentField",
        "path",
        "recordSet",
        "references",
        "regex",
        "repeated",
        "replace",
        "samplingRate",
        "separator",
        "source",
        "subField",
        "transform",
    ] {
        c.insert(term.into(), cr(term));
    }
    Value::Object(c)
}

/// The dataset itself, as upstream asks to credit it (the paper is cited beside it).
const DATASET_BIBTEX: &str = "@misc{kaokore_dataset,
  title        = {KaoKore Dataset},
  howpublished = {collected by CODH from multiple organizations},
  doi          = {10.20676/00000353},
  url          = {https://doi.org/10.20676/00000353}
}
";

/// The Croissant JSON-LD of a build whose other artifacts are `artifacts` (hashed).
pub(crate) fn render(
    dataset: &Dataset,
    opts: &PackOptions,
    summary: &PackSummary,
    artifacts: &[Artifact],
) -> String {
    let v = dataset.version.as_str();
    let size = opts.size;
    let total: u64 = summary.splits.iter().map(|s| s.packed).sum();
    let description = format!(
        "Face crops from Japanese picture scrolls and illustrated books (KaoKore dataset \
         version {v}), with expert labels for gender and social status and upstream's \
         train/dev/test splits: {total} labelled images normalized to {size} x {size} 8-bit \
         RGB, built with kaokore {}. Attribution: {} {}",
        env!("CARGO_PKG_VERSION"),
        crate::ATTRIBUTION,
        crate::REDISTRIBUTION_REQUEST
    );
    let authors = [
        "Yingtao Tian",
        "Chikahiko Suzuki",
        "Tarin Clanuwat",
        "Mikel Bober-Irizar",
        "Alex Lamb",
        "Asanobu Kitamoto",
    ];
    let mut creators = vec![codh()];
    creators.extend(
        authors
            .iter()
            .map(|name| json!({"@type": "sc:Person", "name": name})),
    );
    let providers: Vec<Value> = Provider::ALL
        .iter()
        .map(|p| {
            let images = summary
                .providers
                .iter()
                .find(|c| c.provider == p.name())
                .map_or(0, |c| c.images);
            json!({
                "@type": "sc:Organization",
                "name": p.name(),
                "url": format!("https://{}/", p.host()),
                "description": format!("Content provider: holds and publishes, via IIIF, the works {images} images of this build are cropped from."),
            })
        })
        .collect();

    let doc = json!({
        "@context": context(),
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "name": format!("KaoKore {v} ({size}x{size})"),
        "description": description,
        "version": v,
        "license": crate::LICENSE_URL,
        "url": format!("https://doi.org/{}", crate::DOI),
        "identifier": format!("doi:{}", crate::DOI),
        "sameAs": "https://github.com/rois-codh/kaokore",
        "citeAs": format!("{}\n{DATASET_BIBTEX}", card::BIBTEX),
        "creator": creators,
        "publisher": codh(),
        "provider": providers,
        "usageInfo": crate::REDISTRIBUTION_REQUEST,
        "keywords": ["pre-modern Japanese art", "faces", "image classification", "KaoKore"],
        "isLiveDataset": false,
        "distribution": distribution(opts, artifacts),
        "recordSet": record_sets(dataset, opts, summary),
    });
    // Pretty, for the people who open it; serde_json's maps are sorted, so it is stable.
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

fn codh() -> Value {
    json!({
        "@type": "sc:Organization",
        "name": "ROIS-DS Center for Open Data in the Humanities (CODH)",
        "url": "http://codh.rois.ac.jp/",
    })
}

/// A FileObject per artifact, but for the formats with a file per image (a line each in
/// SHA256SUMS), then each chosen format's FileSets (see [`Format::croissant`]).
///
/// [`Format::croissant`]: super::format::Format::croissant
fn distribution(opts: &PackOptions, artifacts: &[Artifact]) -> Vec<Value> {
    let per_image: Vec<String> = opts
        .formats
        .iter()
        .filter(|f| !f.file_objects())
        .flat_map(|f| f.dirs(opts.size))
        .map(|d| format!("{d}/"))
        .collect();
    let mut files: Vec<Value> = artifacts
        .iter()
        .filter(|a| !per_image.iter().any(|p| a.path.starts_with(p)))
        .map(|a| {
            json!({
                "@type": "cr:FileObject",
                "@id": a.path,
                "name": a.path,
                "contentUrl": a.path,
                "contentSize": format!("{} B", a.bytes),
                "encodingFormat": encoding_format(opts, &a.path),
                "sha256": a.sha256,
            })
        })
        .collect();
    for f in opts.formats.iter() {
        files.extend(f.croissant(opts.size).file_sets);
    }
    files
}

/// The MIME type of an artifact: its format's (a file in its directories or one it names),
/// or for the files of every build (card, metadata, provider list), from the extension.
fn encoding_format(opts: &PackOptions, path: &str) -> &'static str {
    let owner = opts.formats.iter().find(|f| {
        f.dirs(opts.size).iter().any(|d| {
            path.strip_prefix(d.as_str())
                .is_some_and(|r| r.starts_with('/'))
        }) || f.files(opts.size).iter().any(|p| p == path)
    });
    if let Some(format) = owner {
        return format.encoding_format(path);
    }
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "csv" => "text/csv",
        "md" => "text/markdown",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

pub(crate) fn field(
    record_set: &str,
    name: &str,
    data_type: &str,
    description: &str,
) -> Map<String, Value> {
    let id = format!("{record_set}/{name}");
    let Value::Object(map) = json!({
        "@type": "cr:Field",
        "@id": id,
        "name": id,
        "dataType": data_type,
        "description": description,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    map
}

/// A field read from `source` (a FileObject or FileSet), `extract`ed as given.
pub(crate) fn sourced(
    mut f: Map<String, Value>,
    source_kind: &str,
    source_id: &str,
    extract: Value,
) -> Map<String, Value> {
    f.insert(
        "source".into(),
        json!({ source_kind: {"@id": source_id}, "extract": extract }),
    );
    f
}

/// A field whose values are those of the field `target` (a class index, a split).
pub(crate) fn references(mut f: Map<String, Value>, target: &str) -> Map<String, Value> {
    f.insert("references".into(), json!({"field": {"@id": target}}));
    f
}

/// The Croissant split semantics of a split: upstream's `dev` is the validation split.
fn split_url(split: Split) -> &'static str {
    match split {
        Split::Train => "cr:TrainingSplit",
        Split::Dev => "cr:ValidationSplit",
        Split::Test => "cr:TestSplit",
    }
}

fn record_sets(dataset: &Dataset, opts: &PackOptions, summary: &PackSummary) -> Vec<Value> {
    let names = &dataset.class_names;
    let mut sets = vec![
        json!({
            "@type": "cr:RecordSet",
            "@id": "splits",
            "name": "splits",
            "description": "The splits, named as in labels.csv's `set` column and the file names.",
            "dataType": "cr:Split",
            "key": {"@id": "splits/name"},
            "field": [
                field("splits", "name", "sc:Text", "Split name."),
                field("splits", "url", "sc:URL", "Croissant split semantics."),
                field("splits", "images", "sc:Integer", "Images of the split in this build."),
            ],
            "data": Split::ALL.iter().map(|&s| json!({
                "splits/name": s.name(),
                "splits/url": split_url(s),
                "splits/images": summary.splits.iter().find(|c| c.split == s).map_or(0, |c| c.packed),
            })).collect::<Vec<_>>(),
        }),
        enumeration(
            "gender",
            &names.gender,
            "Gender classes (labels.metadata.en.txt).",
        ),
        enumeration(
            "status",
            &names.status,
            "Social status classes (labels.metadata.en.txt).",
        ),
    ];

    // labels.csv is in every build and every Croissant reader reads CSV.
    let csv = |name: &str, column: &str, data_type: &str, description: &str| {
        sourced(
            field("labels", name, data_type, description),
            "fileObject",
            crate::metadata::LABELS_FILE,
            json!({"column": column}),
        )
    };
    sets.push(json!({
        "@type": "cr:RecordSet",
        "@id": "labels",
        "name": "labels",
        "description": "labels.csv as published upstream: every labelled image, including \
                        any this build could not fetch (see report.json).",
        "key": {"@id": "labels/image"},
        "field": [
            csv("image", "image", "sc:Text", "Image file name NNNNNNNN.jpg; NNNNNNNN is the image id, the 0-based line of urls.txt."),
            references(csv("gender", "gender", "sc:Integer", "Gender class index."), "gender/index"),
            references(csv("status", "status", "sc:Integer", "Status class index."), "status/index"),
            references(csv("split", "set", "sc:Text", "Split."), "splits/name"),
        ],
    }));

    for f in opts.formats.iter() {
        sets.extend(f.croissant(opts.size).record_sets);
    }
    sets
}

/// A categorical value: its index (stored in the files) and its name.
fn enumeration(id: &str, names: &[String], description: &str) -> Value {
    let data: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({ format!("{id}/index"): i, format!("{id}/name"): n }))
        .collect();
    json!({
        "@type": "cr:RecordSet",
        "@id": id,
        "name": id,
        "description": description,
        "dataType": "sc:Enumeration",
        "key": {"@id": format!("{id}/index")},
        "field": [
            field(id, "index", "sc:Integer", "Class index, as stored in every artifact."),
            field(id, "name", "sc:Text", "Class name."),
        ],
        "data": data,
    })
}
