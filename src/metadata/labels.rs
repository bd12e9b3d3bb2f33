//! `labels.csv` (image, gender, status, split) and the class names of
//! `labels.metadata.en.txt`.

use super::{ImageId, LABELS_FILE, MetadataError, Split, URLS_FILE, without_bom};

/// The expert labels of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label {
    pub gender: u8,
    pub status: u8,
    pub split: Split,
}

/// Class names of each label, by index (`gender`: male, female; `status`: noble, ...).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClassNames {
    pub gender: Vec<String>,
    pub status: Vec<String>,
}

impl ClassNames {
    /// Parse the upstream layout: a header of attribute names, a line of class counts, then
    /// one block per attribute (`name` followed by `\tindex\tclass` lines).
    pub fn parse(text: &str, file: &str) -> Result<ClassNames, MetadataError> {
        let mut lines = without_bom(text)
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end()));
        let (_, header) = lines
            .next()
            .ok_or_else(|| MetadataError::invalid(file, 1, "empty file"))?;
        let attributes: Vec<&str> = header.split('\t').map(str::trim).collect();
        let (count_line, counts) = lines
            .next()
            .ok_or_else(|| MetadataError::invalid(file, 2, "missing the line of class counts"))?;
        let counts: Vec<usize> = counts
            .split('\t')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                MetadataError::invalid(file, count_line, "class counts must be numbers")
            })?;
        if counts.len() != attributes.len() {
            return Err(MetadataError::invalid(
                file,
                count_line,
                "as many class counts as attribute names expected",
            ));
        }

        let mut blocks: Vec<(String, usize, Vec<String>)> = Vec::new();
        for (n, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(entry) = line.strip_prefix('\t') {
                let block = blocks.last_mut().ok_or_else(|| {
                    MetadataError::invalid(file, n, "class entry before any attribute name")
                })?;
                let (index, name) = entry.split_once('\t').ok_or_else(|| {
                    MetadataError::invalid(file, n, "class entry must be '<tab>index<tab>name'")
                })?;
                if index.trim().parse::<usize>().ok() != Some(block.2.len()) {
                    return Err(MetadataError::invalid(
                        file,
                        n,
                        format!("class index {} out of order", index.trim()),
                    ));
                }
                block.2.push(name.trim().to_string());
            } else {
                blocks.push((line.trim().to_string(), n, Vec::new()));
            }
        }

        let find = |attribute: &str, position: usize| -> Result<Vec<String>, MetadataError> {
            let (_, line, names) = blocks
                .iter()
                .find(|(name, _, _)| {
                    name == attribute
                        || (position < attributes.len() && name == attributes[position])
                })
                .cloned()
                .ok_or_else(|| {
                    MetadataError::invalid(file, 1, format!("no class names for '{attribute}'"))
                })?;
            if counts.get(position) != Some(&names.len()) {
                return Err(MetadataError::invalid(
                    file,
                    line,
                    format!(
                        "'{attribute}' lists {} classes, the header says {}",
                        names.len(),
                        counts.get(position).copied().unwrap_or(0)
                    ),
                ));
            }
            Ok(names)
        };
        Ok(ClassNames {
            gender: find("gender", 0)?,
            status: find("status", 1)?,
        })
    }
}

/// Parse labels.csv into (line, id, label) in file order, validating every row. An id
/// must be one of the `urls_lines` lines of urls.txt: one beyond means the files are not
/// of one version.
pub(super) fn parse(
    text: &str,
    classes: &ClassNames,
    urls_lines: usize,
) -> Result<Vec<(usize, ImageId, Label)>, MetadataError> {
    let bad = |line: usize, message: String| MetadataError::invalid(LABELS_FILE, line, message);
    let mut lines = without_bom(text)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, header) = lines.next().ok_or_else(|| {
        bad(
            1,
            "empty file, expected header 'image,gender,status,set'".into(),
        )
    })?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| bad(1, format!("missing column '{name}' (header is '{header}')")))
    };
    let (c_image, c_gender, c_status, c_set) = (
        column("image")?,
        column("gender")?,
        column("status")?,
        column("set")?,
    );

    let mut seen = std::collections::HashMap::new();
    let mut rows = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(bad(
                n,
                format!("{} fields, the header has {}", fields.len(), columns.len()),
            ));
        }
        let id = parse_image_name(fields[c_image]).ok_or_else(|| {
            bad(
                n,
                format!(
                    "image '{}' is not an image name like 00000042.jpg",
                    fields[c_image]
                ),
            )
        })?;
        if id.0 as usize >= urls_lines {
            return Err(bad(n, beyond_urls(id, urls_lines)));
        }
        if let Some(first) = seen.insert(id, n) {
            return Err(bad(
                n,
                format!("duplicate image {} (first on line {first})", id.file_name()),
            ));
        }
        let class = |value: &str, attribute: &str, names: &[String]| -> Result<u8, MetadataError> {
            match value.parse::<usize>() {
                Ok(v) if v < names.len() => Ok(v as u8),
                Ok(v) => Err(bad(
                    n,
                    format!("{attribute} {v} out of range (0..{})", names.len() - 1),
                )),
                Err(_) => Err(bad(
                    n,
                    format!("{attribute} '{value}' is not a class index"),
                )),
            }
        };
        let gender = class(fields[c_gender], "gender", &classes.gender)?;
        let status = class(fields[c_status], "status", &classes.status)?;
        let split = match fields[c_set] {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            other => {
                return Err(bad(
                    n,
                    format!("unknown split '{other}' (expected train, dev or test)"),
                ));
            }
        };
        rows.push((
            n,
            id,
            Label {
                gender,
                status,
                split,
            },
        ));
    }
    Ok(rows)
}

/// The message for an image id that urls.txt has no line for.
pub(super) fn beyond_urls(id: ImageId, urls_lines: usize) -> String {
    format!(
        "image {} is beyond the end of {URLS_FILE} ({urls_lines} lines): the files are not of one version",
        id.file_name()
    )
}

/// `00000042.jpg` -> 42. Upstream names are eight digits and `.jpg`.
pub(super) fn parse_image_name(name: &str) -> Option<ImageId> {
    let digits = name.strip_suffix(".jpg")?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(ImageId)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "gender\tstatus\n2\t4\n\ngender\n\t0\tmale\n\t1\tfemale\n\nstatus\n\t0\tnoble\n\t1\twarrior\n\t2\tincarnation\n\t3\tcommoner\n";

    #[test]
    fn class_names() {
        let c = ClassNames::parse(EN, "labels.metadata.en.txt").unwrap();
        assert_eq!(c.gender, ["male", "female"]);
        assert_eq!(c.status, ["noble", "warrior", "incarnation", "commoner"]);
    }

    #[test]
    fn image_names() {
        assert_eq!(parse_image_name("00000042.jpg"), Some(ImageId(42)));
        assert_eq!(parse_image_name("abc.jpg"), None);
        assert_eq!(parse_image_name("00000042.png"), None);
        assert_eq!(parse_image_name("-1.jpg"), None);
    }
}
