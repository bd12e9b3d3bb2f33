//! `original_tags.txt`: `NNNNNNNN.jpg:key=value;key=value;...`, the experts' metadata in
//! Japanese. Keys repeat, values may be empty or padded, stray `=` entries exist: all of
//! that is tolerated (and counted); only a line that names no image is an error.

use std::collections::BTreeMap;

use super::labels::{beyond_urls, parse_image_name};
use super::{ImageId, MetadataError, TAGS_FILE, Warning, WarningKind, without_bom};

/// The parsed expert metadata of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    /// 原典: the title of the work.
    pub source_title: Option<String>,
    /// 原典ID, DOI or a holder's record id / call number.
    pub source_id: Option<String>,
    /// 向き: which way the face looks.
    pub orientation: Option<String>,
    /// 制作年 values other than `from NNNN` / `to NNNN` (e.g. 江戸前期), joined by `; `.
    pub era: Option<String>,
    pub year_from: Option<i32>,
    pub year_to: Option<i32>,
    /// 所蔵: the holding institution.
    pub holder: Option<String>,
    /// Every non-empty タグ value, in order.
    pub tags: Vec<String>,
    /// The line after `NNNNNNNN.jpg:`, unchanged, for anything not parsed here.
    pub raw: String,
}

/// Keys whose value identifies the source work: 原典ID (v1.0), DOI, Keio's call number,
/// Kyoto's record id.
fn is_source_id_key(key: &str) -> bool {
    key == "原典ID" || key == "DOI" || key.ends_with("請求記号") || key.ends_with("レコードID")
}

/// Each image's tags with the line they were on.
pub(super) type TagsById = BTreeMap<ImageId, (usize, Tags)>;

/// Parse every line into (id -> (line number, tags)), with the quirks found. An id must
/// be one of the `urls_lines` lines of urls.txt.
pub(super) fn parse(
    text: &str,
    urls_lines: usize,
) -> Result<(TagsById, Vec<Warning>), MetadataError> {
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    for (i, line) in without_bom(text).lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line.split_once(':').ok_or_else(|| {
            MetadataError::invalid(TAGS_FILE, n, "expected 'NNNNNNNN.jpg:key=value;...'")
        })?;
        let id = parse_image_name(name.trim()).ok_or_else(|| {
            MetadataError::invalid(
                TAGS_FILE,
                n,
                format!("'{name}' is not an image name like 00000042.jpg"),
            )
        })?;
        if id.0 as usize >= urls_lines {
            return Err(MetadataError::invalid(
                TAGS_FILE,
                n,
                beyond_urls(id, urls_lines),
            ));
        }
        let mut warn = |kind| {
            warnings.push(Warning {
                file: TAGS_FILE,
                line: n,
                kind,
            })
        };
        let tags = parse_entries(rest, &mut warn);
        if let Some((first, _)) = out.insert(id, (n, tags)) {
            return Err(MetadataError::invalid(
                TAGS_FILE,
                n,
                format!("duplicate image {} (first on line {first})", id.file_name()),
            ));
        }
    }
    Ok((out, warnings))
}

fn parse_entries(rest: &str, warn: &mut impl FnMut(WarningKind)) -> Tags {
    let mut tags = Tags {
        raw: rest.to_string(),
        ..Tags::default()
    };
    // Distinct era values in order; the set keeps a line of many of them linear.
    let mut era: Vec<&str> = Vec::new();
    let mut era_seen = std::collections::HashSet::new();
    for entry in rest.split(';') {
        if entry.is_empty() {
            continue;
        }
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => (k.trim(), v),
            _ => {
                warn(WarningKind::StrayTagEntry);
                continue;
            }
        };
        let trimmed = value.trim();
        if trimmed.len() != value.len() {
            warn(WarningKind::PaddedTagValue);
        }
        if trimmed.is_empty() {
            continue;
        }
        let value = trimmed.to_string();
        match key {
            "原典" => tags.source_title = Some(value),
            "向き" => tags.orientation = Some(value),
            "所蔵" => tags.holder = Some(value),
            "タグ" => tags.tags.push(value),
            "制作年" => {
                if let Some(y) = year_after(&value, "from") {
                    tags.year_from = Some(y);
                } else if let Some(y) = year_after(&value, "to") {
                    tags.year_to = Some(y);
                } else if era_seen.insert(trimmed) {
                    era.push(trimmed);
                }
            }
            k if is_source_id_key(k) => {
                tags.source_id.get_or_insert(value);
            }
            _ => {}
        }
    }
    if !era.is_empty() {
        tags.era = Some(era.join("; "));
    }
    tags
}

/// `from 1500` -> 1500 for prefix `from`.
fn year_after(value: &str, prefix: &str) -> Option<i32> {
    value.strip_prefix(prefix)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> (Tags, Vec<WarningKind>) {
        let mut kinds = Vec::new();
        let tags = parse_entries(line, &mut |k| kinds.push(k));
        (tags, kinds)
    }

    #[test]
    fn repeated_keys_years_and_era() {
        let (t, w) = one(
            "制作年=from 1500;制作年=to 1600;制作年=室町末近世初;原典=ふんせう;原典ID=110X@445@3@2;向き=横;性別=男;所蔵=慶應義塾大学;身分=貴族",
        );
        assert!(w.is_empty());
        assert_eq!(t.year_from, Some(1500));
        assert_eq!(t.year_to, Some(1600));
        assert_eq!(t.era.as_deref(), Some("室町末近世初"));
        assert_eq!(t.source_title.as_deref(), Some("ふんせう"));
        assert_eq!(t.source_id.as_deref(), Some("110X@445@3@2"));
        assert_eq!(t.orientation.as_deref(), Some("横"));
        assert_eq!(t.holder.as_deref(), Some("慶應義塾大学"));
    }

    #[test]
    fn stray_entries_empty_and_padded_values() {
        let (t, w) =
            one("=;=;タグ=唐のたいしやう;タグ=;DOI=10.20730/200003085 ;制作年=;原典=七くさ");
        assert_eq!(
            w,
            [
                WarningKind::StrayTagEntry,
                WarningKind::StrayTagEntry,
                WarningKind::PaddedTagValue
            ]
        );
        assert_eq!(t.tags, ["唐のたいしやう"]);
        assert_eq!(t.source_id.as_deref(), Some("10.20730/200003085"));
        assert_eq!(t.era, None);
        assert_eq!(t.year_from, None);
    }

    #[test]
    fn many_distinct_eras_on_one_line_parse_in_linear_time() {
        // 100,000 distinct values: a quadratic de-duplication takes minutes.
        let line: String = (0..100_000).map(|i| format!("制作年=era{i};")).collect();
        let started = std::time::Instant::now();
        let (t, _) = one(&line);
        let era = t.era.unwrap();
        assert!(era.starts_with("era0; era1; era2;"));
        assert_eq!(era.matches("; ").count(), 99_999);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_line_without_an_image_name_is_an_error() {
        let err = parse("00000000.jpg:原典=a\nnonsense\n", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "original_tags.txt:2: expected 'NNNNNNNN.jpg:key=value;...'"
        );
    }
}
