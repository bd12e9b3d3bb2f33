//! The human-facing files of an output directory: the dataset card `README.md`,
//! `CONTENT_PROVIDERS.txt`, and the copied upstream metadata files.
//!
//! All of them depend only on the inputs and options (no dates, paths or timings), so
//! they hash the same on every build.

use std::fmt::Write as _;
use std::io::Write as _;

use super::PackOptions;
use super::format::{CardChange, CardContext, CardRow, FileSink, Snippet};
use super::{PackError, PackSummary};
use crate::metadata::{Dataset, Split};

pub use crate::layout::{CARD as README, CONTENT_PROVIDERS};

/// The KaoKore paper, as BibTeX (the card and croissant.json cite it).
pub(crate) const BIBTEX: &str = "@inproceedings{tian2020kaokore,
  title     = {KaoKore: A Pre-modern Japanese Art Facial Expression Dataset},
  author    = {Tian, Yingtao and Suzuki, Chikahiko and Clanuwat, Tarin and Bober-Irizar, Mikel and Lamb, Alex and Kitamoto, Asanobu},
  booktitle = {Proceedings of the International Conference on Computational Creativity (ICCC)},
  pages     = {415--422},
  year      = {2020},
  eprint    = {2002.08595},
  archivePrefix = {arXiv}
}
";

/// Write the card, the provider list and the copied metadata into `sink`; returns their
/// paths.
pub(crate) fn write(
    sink: &dyn FileSink,
    dataset: &Dataset,
    opts: &PackOptions,
    summary: &PackSummary,
) -> Result<Vec<String>, PackError> {
    let mut produced = Vec::new();
    let mut put = |name: &str, text: &str| -> Result<(), PackError> {
        let mut file = sink.create(name)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(PackError::io(name))?;
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
    let ctx = CardContext {
        dataset,
        opts,
        summary,
    };
    let mut s = front_matter(&ctx);
    let _ = writeln!(s, "# KaoKore {v}, normalized to {size} x {size} RGB\n");
    let _ = writeln!(
        s,
        "> **Built for you; do not redistribute.** {}\n",
        crate::REDISTRIBUTION_REQUEST
    );
    for head in f.iter().filter_map(|format| format.card_head(&ctx)) {
        let _ = writeln!(s, "{head}");
    }
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
         format, so row i of every format's files of a split is the same image.\n"
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
    let mut items = vec![
        format!(
            "grayscale, RGBA (alpha dropped), CMYK and 16-bit images converted to 8-bit RGB \
             ({} images{})",
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
        ),
        format!(
            "images not already {size} x {size} resized with a Lanczos3 filter, stretched to \
             the square (not cropped or padded) ({} images)",
            n.resized
        ),
    ];
    let mut notes = Vec::new();
    for change in f.iter().flat_map(|format| format.card_changes(&ctx)) {
        match change {
            CardChange::Item(item) => items.push(item),
            CardChange::Note(note) => notes.push(note),
        }
    }
    let _ = writeln!(
        s,
        "Every image was decoded and normalized to {size} x {size} 8-bit RGB:\n\n- {}.\n",
        items.join(";\n- ")
    );
    for note in notes {
        let _ = writeln!(s, "{note}");
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
         | `croissant.json` | Croissant 1.1 metadata: licence, citation, every file with its SHA-256, class names, splits |\n\
         | `SHA256SUMS` | checksums: `sha256sum -c SHA256SUMS` |\n"
    );
    let _ = writeln!(
        s,
        "Class names: gender {}; status {}.\n",
        numbered(&names.gender),
        numbered(&names.status)
    );

    let _ = writeln!(s, "## Loading\n");
    // Each format's example; those of one group share a code block.
    let mut snippets: Vec<Snippet> = f
        .iter()
        .filter_map(|format| format.card_snippet(&ctx))
        .collect();
    snippets.sort_by_key(|sn| sn.rank);
    let mut groups: Vec<&str> = Vec::new();
    for snippet in &snippets {
        if !groups.contains(&snippet.group) {
            groups.push(snippet.group);
        }
    }
    for group in groups {
        let mut members = snippets.iter().filter(|sn| sn.group == group).peekable();
        let preamble = members.peek().map_or("", |sn| sn.preamble);
        if group.is_empty() {
            // Text with code blocks of its own.
            for snippet in members {
                let _ = writeln!(s, "{}", snippet.code);
            }
            continue;
        }
        let _ = writeln!(s, "{group}:\n\n```python\n{preamble}");
        for snippet in members {
            let _ = writeln!(s, "{}", snippet.code);
        }
        let _ = writeln!(s, "```\n");
    }
    // The richest record set croissant.json has: a format's (one per image), else labels.
    let records = f
        .iter()
        .flat_map(|format| format.croissant(size).record_sets)
        .find_map(|set| set["@id"].as_str().map(String::from))
        .unwrap_or_else(|| "labels".into());
    let _ = writeln!(
        s,
        "Croissant (`mlcroissant`; record sets `{records}`, `labels`, `splits`, `gender`, \
         `status`):\n\n```python\nimport mlcroissant as mlc\n\n\
         records = mlc.Dataset(jsonld=\"croissant.json\").records(record_set=\"{records}\")\n```\n"
    );

    let _ = writeln!(s, "## Citation\n\n{}\n", crate::CITATION);
    let _ = writeln!(s, "```bibtex\n{BIBTEX}```\n");
    let _ = writeln!(s, "Dataset: {}\n", crate::ATTRIBUTION);
    let _ = writeln!(s, "## Content providers\n");
    for p in &summary.providers {
        let _ = writeln!(s, "- {} ({} images)", p.provider, p.images);
    }
    s
}

/// The split name the card's `configs` give a split: the Hub's `validation` for
/// upstream's `dev`, the name `datasets` itself infers from the `dev-*.parquet` files, so
/// `load_dataset(OUT)` and `load_dataset("parquet", data_dir=...)` agree and scripts
/// written for Hub datasets find it.
pub(crate) fn hub_split(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Dev => "validation",
        Split::Test => "test",
    }
}

/// A YAML scalar for any text: a double-quoted JSON string is valid YAML.
pub(crate) fn yaml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The Hugging Face Hub metadata: YAML front matter that lets `datasets.load_dataset(OUT)`
/// find the Parquet splits and their features (Image, ClassLabel with the names) with no
/// other argument, and gives the Hub its licence and categories.
fn front_matter(ctx: &CardContext<'_>) -> String {
    let (dataset, opts, summary) = (ctx.dataset, ctx.opts, ctx.summary);
    let v = dataset.version.as_str();
    let size = opts.size;
    let total: u64 = summary.splits.iter().map(|s| s.packed).sum();
    let mut s = String::from("---\n");
    let _ = writeln!(
        s,
        "pretty_name: {}",
        yaml_str(&format!("KaoKore {v} ({size}x{size})"))
    );
    s.push_str(
        "license: cc-by-sa-4.0\n\
         task_categories:\n- image-classification\n\
         task_ids:\n- multi-class-image-classification\n\
         annotations_creators:\n- expert-generated\n\
         source_datasets:\n- original\n\
         tags:\n- art\n- japanese-art\n- faces\n- kaokore\n",
    );
    let _ = writeln!(s, "size_categories:\n- {}", size_category(total));
    for format in opts.formats.iter() {
        if let Some(yaml) = format.hub_yaml(ctx) {
            s.push_str(&yaml);
        }
    }
    s.push_str("---\n\n");
    s
}

/// The Hub's size category of a dataset of `rows` examples.
fn size_category(rows: u64) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        _ => "1M<n<10M",
    }
}

fn numbered(names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} = {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::DatasetVersion;
    use crate::pack::Formats;
    use std::collections::BTreeMap;

    /// The YAML subset the front matter is written in: block mappings and sequences by
    /// indentation, plain, single-quoted or double-quoted (JSON) scalars.
    #[derive(Debug, PartialEq)]
    enum Yaml {
        Text(String),
        List(Vec<Yaml>),
        Map(BTreeMap<String, Yaml>),
    }

    impl Yaml {
        fn get(&self, key: &str) -> &Yaml {
            match self {
                Yaml::Map(m) => m.get(key).unwrap_or_else(|| panic!("no key {key}")),
                other => panic!("{other:?} is not a mapping"),
            }
        }
        fn at(&self, i: usize) -> &Yaml {
            match self {
                Yaml::List(l) => &l[i],
                other => panic!("{other:?} is not a list"),
            }
        }
        fn text(&self) -> &str {
            match self {
                Yaml::Text(t) => t,
                other => panic!("{other:?} is not a scalar"),
            }
        }
        fn len(&self) -> usize {
            match self {
                Yaml::List(l) => l.len(),
                Yaml::Map(m) => m.len(),
                Yaml::Text(_) => 1,
            }
        }
    }

    fn scalar(raw: &str) -> String {
        if raw.starts_with('"') {
            serde_json::from_str(raw).expect("a double-quoted scalar is JSON")
        } else if let Some(inner) = raw.strip_prefix('\'') {
            inner
                .strip_suffix('\'')
                .expect("closed quote")
                .replace("''", "'")
        } else {
            assert!(
                !raw.contains(": ") && !raw.starts_with(['{', '[', '&', '*', '!', '|', '>']),
                "plain scalar {raw:?} would not read as text"
            );
            raw.to_string()
        }
    }

    /// Parse lines[*pos..] indented by `indent` into one node.
    fn node(lines: &[(usize, &str)], pos: &mut usize, indent: usize) -> Yaml {
        if lines[*pos].1.starts_with("- ") {
            let mut items = Vec::new();
            while *pos < lines.len() && lines[*pos].0 == indent && lines[*pos].1.starts_with("- ") {
                // The item's content starts two columns further in, on this line.
                let (_, text) = lines[*pos];
                let rest = &text[2..];
                if rest.contains(": ") || rest.ends_with(':') {
                    let mut sub = vec![(indent + 2, rest)];
                    let mut end = *pos + 1;
                    while end < lines.len() && lines[end].0 > indent {
                        sub.push(lines[end]);
                        end += 1;
                    }
                    let mut p = 0;
                    items.push(node(&sub, &mut p, indent + 2));
                    assert_eq!(p, sub.len(), "unparsed lines in a list item");
                    *pos = end;
                } else {
                    items.push(Yaml::Text(scalar(rest)));
                    *pos += 1;
                }
            }
            return Yaml::List(items);
        }
        let mut map = BTreeMap::new();
        while *pos < lines.len() && lines[*pos].0 == indent && !lines[*pos].1.starts_with("- ") {
            let (_, text) = lines[*pos];
            *pos += 1;
            let (key, value) = match text.split_once(": ") {
                Some((k, v)) => (k, Some(v)),
                None => (text.strip_suffix(':').expect("key: or key: value"), None),
            };
            let value = match value {
                Some(v) => Yaml::Text(scalar(v)),
                // A nested block: more indented, or a list at the same indentation.
                None => {
                    let (next_indent, next) = lines[*pos];
                    assert!(
                        next_indent > indent || next.starts_with("- "),
                        "empty value for {key}"
                    );
                    node(lines, pos, next_indent)
                }
            };
            assert!(
                map.insert(scalar(key), value).is_none(),
                "duplicate key {key}"
            );
        }
        Yaml::Map(map)
    }

    fn parse(front: &str) -> Yaml {
        let lines: Vec<(usize, &str)> = front
            .lines()
            .map(|l| {
                assert!(!l.contains('\t'), "tab in {l:?}");
                let text = l.trim_start_matches(' ');
                (l.len() - text.len(), text)
            })
            .collect();
        let mut pos = 0;
        let doc = node(&lines, &mut pos, 0);
        assert_eq!(pos, lines.len(), "unparsed line {:?}", lines.get(pos));
        doc
    }

    fn summary(rows: [u64; 3]) -> PackSummary {
        PackSummary {
            splits: Split::ALL
                .iter()
                .zip(rows)
                .map(|(&split, packed)| super::super::SplitSummary {
                    split,
                    packed,
                    gender: Vec::new(),
                    status: Vec::new(),
                })
                .collect(),
            ..PackSummary::default()
        }
    }

    /// The card's front matter: the text between the first two `---` lines.
    fn front_of(card: &str) -> &str {
        let body = card
            .strip_prefix("---\n")
            .expect("the card starts with ---");
        &body[..body.find("\n---\n").expect("front matter closed") + 1]
    }

    #[test]
    fn front_matter_is_yaml_with_what_the_hub_and_datasets_read() {
        let mut dataset = Dataset::embedded(DatasetVersion::V1_3).unwrap();
        // A class name YAML would misread unquoted.
        dataset.class_names.status[2] = "incarnation: 'x' # #".into();
        let opts = PackOptions {
            size: 64,
            ..PackOptions::default()
        };
        let card = readme(&dataset, &opts, &summary([7405, 926, 926]));
        let doc = parse(front_of(&card));

        assert_eq!(doc.get("license").text(), "cc-by-sa-4.0");
        assert_eq!(doc.get("pretty_name").text(), "KaoKore 1.3 (64x64)");
        assert_eq!(doc.get("size_categories").at(0).text(), "1K<n<10K");
        assert_eq!(
            doc.get("task_categories").at(0).text(),
            "image-classification"
        );
        let config = doc.get("configs").at(0);
        assert_eq!(config.get("config_name").text(), "default");
        let files = config.get("data_files");
        let splits: Vec<(&str, &str)> = (0..files.len())
            .map(|i| {
                (
                    files.at(i).get("split").text(),
                    files.at(i).get("path").text(),
                )
            })
            .collect();
        assert_eq!(
            splits,
            [
                ("train", "parquet/train-*.parquet"),
                ("validation", "parquet/dev-*.parquet"),
                ("test", "parquet/test-*.parquet"),
            ]
        );

        // One feature per Parquet column, in column order, with the class names.
        let features = doc.get("dataset_info").get("features");
        let schema = crate::pack::arrow_schema();
        assert_eq!(features.len(), schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            assert_eq!(features.at(i).get("name").text(), f.name());
        }
        assert_eq!(features.at(0).get("dtype").text(), "image");
        for (i, names) in [
            (2, &dataset.class_names.gender),
            (3, &dataset.class_names.status),
        ] {
            let classes = features.at(i).get("dtype").get("class_label").get("names");
            let got: Vec<&str> = (0..names.len())
                .map(|k| classes.get(&k.to_string()).text())
                .collect();
            assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        assert_eq!(
            features
                .at(2)
                .get("dtype")
                .get("class_label")
                .get("names")
                .len(),
            2
        );

        // The card's own text follows the front matter.
        assert!(card[front_of(&card).len() + 4..].starts_with("---\n\n# KaoKore 1.3"));
    }

    #[test]
    fn the_card_and_the_copied_metadata_are_written_through_the_sink() {
        use crate::pack::format::testing::{self, MemorySink};
        let dataset = testing::dataset();
        let opts = testing::options("idx,parquet");
        let mut summary = summary([3, 2, 1]);
        summary.providers = vec![super::super::ProviderCount {
            provider: "Kyoto".into(),
            images: 6,
        }];
        let sink = MemorySink::default();
        let produced = write(&sink, &dataset, &opts, &summary).unwrap();
        let mut names = vec![README, CONTENT_PROVIDERS];
        names.extend(dataset.files.copied().map(|(name, _)| name));
        assert_eq!(produced, names);
        let text = |name| String::from_utf8(sink.bytes(name)).unwrap();
        assert_eq!(text(README), readme(&dataset, &opts, &summary));
        assert!(text(CONTENT_PROVIDERS).contains("- Kyoto (6 images in this build)"));
        for (name, original) in dataset.files.copied() {
            assert_eq!(text(name), original, "{name}");
        }
    }

    #[test]
    fn without_parquet_the_front_matter_has_no_configs() {
        let dataset = Dataset::embedded(DatasetVersion::V1_0).unwrap();
        let opts = PackOptions {
            formats: "npz".parse::<Formats>().unwrap(),
            ..PackOptions::default()
        };
        let doc = parse(front_of(&readme(&dataset, &opts, &summary([900, 50, 49]))));
        assert_eq!(doc.get("size_categories").at(0).text(), "n<1K");
        assert_eq!(doc.get("license").text(), "cc-by-sa-4.0");
        let Yaml::Map(keys) = &doc else {
            panic!("not a mapping")
        };
        assert!(!keys.contains_key("configs") && !keys.contains_key("dataset_info"));
    }

    #[test]
    fn the_parser_rejects_what_yaml_would_misread() {
        let bad = std::panic::catch_unwind(|| parse("a: b: c\n"));
        assert!(bad.is_err());
        let bad = std::panic::catch_unwind(|| parse("a:\n  - x\n  y: z\n"));
        assert!(bad.is_err());
        assert_eq!(
            parse("a:\n- k: '1'\n  v: \"x\\\"\"\n")
                .get("a")
                .at(0)
                .get("v")
                .text(),
            "x\""
        );
    }
}
