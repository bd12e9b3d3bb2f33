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
        // Labels are stored as bytes (idx, npz): a count that fits one keeps every index
        // and the count itself in range; no classes at all leaves nothing to label.
        if let Some(&count) = counts.iter().find(|&&c| c == 0 || c > MAX_CLASSES) {
            return Err(MetadataError::invalid(
                file,
                count_line,
                format!("{count} classes: an attribute must have 1 to {MAX_CLASSES}"),
            ));
        }
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

/// The most classes an attribute may have: labels are stored as bytes.
pub const MAX_CLASSES: usize = u8::MAX as usize;

/// One row of labels.csv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRow {
    /// 1-based line number in labels.csv.
    pub line: usize,
    pub id: ImageId,
    pub label: Label,
}

/// Parse labels.csv into its rows in file order, validating every row: the columns
/// `image`, `gender`, `status` and `set` are found by their header name, in any order
/// (other columns are ignored); fields are trimmed; blank lines are skipped. An image may
/// appear once, a label must be a class of `classes`, a split `train`, `dev` or `test`.
/// The first problem is an error naming its line.
///
/// This is the one reader of labels.csv: the build uses it, and so can anything that
/// re-reads a copied labels.csv (with the class names of the labels.metadata.en.txt
/// copied beside it).
pub fn parse_labels_csv(text: &str, classes: &ClassNames) -> Result<Vec<LabelRow>, MetadataError> {
    parse_rows(text, classes, None)
}

/// [`parse_labels_csv`], and every id must also be one of the `urls_lines` lines of
/// urls.txt: one beyond means the files are not of one version.
pub(super) fn parse(
    text: &str,
    classes: &ClassNames,
    urls_lines: usize,
) -> Result<Vec<LabelRow>, MetadataError> {
    parse_rows(text, classes, Some(urls_lines))
}

fn parse_rows(
    text: &str,
    classes: &ClassNames,
    urls_lines: Option<usize>,
) -> Result<Vec<LabelRow>, MetadataError> {
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
        let mut found = columns.iter().enumerate().filter(|(_, c)| **c == name);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(bad(
                1,
                format!("missing column '{name}' (header is '{header}')"),
            )),
            (Some(_), Some(_)) => Err(bad(1, format!("column '{name}' appears twice"))),
        }
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
        if let Some(urls_lines) = urls_lines
            && id.0 as usize >= urls_lines
        {
            return Err(bad(n, beyond_urls(id, urls_lines)));
        }
        if let Some(first) = seen.insert(id, n) {
            return Err(bad(
                n,
                format!("duplicate image {} (first on line {first})", id.file_name()),
            ));
        }
        let class = |value: &str, attribute: &str, names: &[String]| -> Result<u8, MetadataError> {
            let Ok(v) = value.parse::<usize>() else {
                return Err(bad(
                    n,
                    format!("{attribute} '{value}' is not a class index"),
                ));
            };
            match names.len().checked_sub(1) {
                None => return Err(bad(n, format!("no {attribute} classes declared"))),
                Some(last) if v > last => {
                    return Err(bad(n, format!("{attribute} {v} out of range (0..{last})")));
                }
                Some(_) => {}
            }
            // Class names are checked to fit a byte; never wrap if they did not.
            u8::try_from(v).map_err(|_| {
                bad(
                    n,
                    format!("{attribute} {v} does not fit in a byte (0..={})", u8::MAX),
                )
            })
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
        rows.push(LabelRow {
            line: n,
            id,
            label: Label {
                gender,
                status,
                split,
            },
        });
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

    fn classes() -> ClassNames {
        ClassNames::parse(EN, "labels.metadata.en.txt").unwrap()
    }

    fn rows(text: &str) -> Vec<(u32, u8, u8, Split)> {
        parse_labels_csv(text, &classes())
            .unwrap()
            .into_iter()
            .map(|r| (r.id.0, r.label.gender, r.label.status, r.label.split))
            .collect()
    }

    #[test]
    fn columns_are_found_by_name_whatever_their_order_padding_or_company() {
        let upstream = "image,gender,status,set\n00000002.jpg,1,0,train\n00000000.jpg,0,3,test\n";
        let expected = vec![(2, 1, 0, Split::Train), (0, 0, 3, Split::Test)];
        assert_eq!(rows(upstream), expected);
        for text in [
            "set,status,image,gender\ntrain,0,00000002.jpg,1\ntest,3,00000000.jpg,0\n",
            "image,note,gender,status,set\n00000002.jpg,x,1,0,train\n00000000.jpg,,0,3,test\n",
            " image , gender,status ,set\r\n 00000002.jpg , 1 ,0, train \r\n\n00000000.jpg,0 , 3,test\r\n",
        ] {
            assert_eq!(rows(text), expected, "{text:?}");
        }
        // Line numbers are the file's, blank lines counted.
        let lines: Vec<usize> = parse_labels_csv(
            "image,gender,status,set\n\n00000002.jpg,1,0,train\n",
            &classes(),
        )
        .unwrap()
        .iter()
        .map(|r| r.line)
        .collect();
        assert_eq!(lines, [3]);
    }

    #[test]
    fn a_column_named_twice_is_ambiguous() {
        let err = parse_labels_csv("image,gender,status,set,gender\n", &classes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels.csv:1: column 'gender' appears twice"
        );
    }

    #[test]
    fn a_label_beyond_a_byte_is_refused_not_wrapped() {
        // Class names that declare more classes than a byte holds (built by hand: the
        // parser refuses them) still cannot make label 256 come out as 0.
        let many: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let classes = ClassNames {
            gender: many.clone(),
            status: many,
        };
        let text = "image,gender,status,set\n00000000.jpg,0,0,train\n00000001.jpg,256,0,train\n";
        let err = parse_labels_csv(text, &classes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels.csv:3: gender 256 does not fit in a byte (0..=255)"
        );
    }

    #[test]
    fn more_classes_than_a_byte_holds_are_refused() {
        let with_counts = |counts: &str| EN.replacen("2\t4", counts, 1);
        let err = ClassNames::parse(&with_counts("300\t4"), "labels.metadata.en.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels.metadata.en.txt:2: 300 classes: an attribute must have 1 to 255"
        );
        let err = ClassNames::parse(&with_counts("2\t256"), "labels.metadata.en.txt").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("labels.metadata.en.txt:2: 256 classes")
        );
        // No classes at all leaves nothing a label could be.
        let err = ClassNames::parse(&with_counts("0\t4"), "labels.metadata.en.txt").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("labels.metadata.en.txt:2: 0 classes")
        );
        // 255 is the most.
        let names: String = (0..255).map(|i| format!("\t{i}\tc{i}\n")).collect();
        let text = format!("gender\tstatus\n255\t1\n\ngender\n{names}\nstatus\n\t0\tnoble\n");
        assert_eq!(ClassNames::parse(&text, "x").unwrap().gender.len(), 255);
    }

    #[test]
    fn out_of_range_labels_name_the_range() {
        let text = "image,gender,status,set\n00000000.jpg,2,0,train\n";
        let err = parse_labels_csv(text, &classes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels.csv:2: gender 2 out of range (0..1)"
        );
        // Class names built by hand with no classes do not underflow the message.
        let none = ClassNames {
            gender: Vec::new(),
            status: classes().status,
        };
        let err = parse_labels_csv(text, &none).unwrap_err();
        assert_eq!(err.to_string(), "labels.csv:2: no gender classes declared");
    }

    #[test]
    fn image_names() {
        assert_eq!(parse_image_name("00000042.jpg"), Some(ImageId(42)));
        assert_eq!(parse_image_name("abc.jpg"), None);
        assert_eq!(parse_image_name("00000042.png"), None);
        assert_eq!(parse_image_name("-1.jpg"), None);
    }
}
