//! Labels of one split across formats: every format that states labels gives each row
//! the same image id, gender and status as the first, and those are labels.csv's, in its
//! order. The image ids found here are what the pixel check compares rows by.

use super::VerifyReport;
use crate::metadata::Split;
use crate::pack::format::Format;
use crate::pack::read::{LabelsOrder, MAX_ROW_PROBLEMS_PER_FILE, RowLabels, SplitAt};

/// What the labels of a split say of its rows.
pub(super) struct SplitRows {
    /// The image id of each row as an artifact states them (npz labels, Parquet,
    /// WebDataset; idx carries none) or, when none does, as a format knows them from its
    /// files' names and labels.csv's order.
    pub ids: Option<Vec<u32>>,
    /// The (gender, status) class of each row, as the first format that states labels
    /// states them or, failing that, as labels.csv gives them for `ids`.
    pub classes: Option<Vec<(u8, u8)>>,
}

/// Check the labels of the split `at` in each of `formats` against each other and
/// against labels.csv (`order`, when it could be read); returns the rows' ids and classes.
pub(super) fn check(
    at: &SplitAt<'_>,
    formats: &[&'static dyn Format],
    order: Option<&LabelsOrder>,
    report: &mut VerifyReport,
) -> SplitRows {
    // Labels from each format, in full (they are one or a few bytes per row, and each
    // reader checked the count against the record and the file size first).
    let sources: Vec<(String, Vec<RowLabels>)> = formats
        .iter()
        .filter_map(|f| f.read_labels(at, &mut report.problems))
        .collect();
    let ids: Option<Vec<u32>> = sources
        .iter()
        .find(|(_, rows)| rows.iter().all(|r| r.image_id.is_some()) && !rows.is_empty())
        .map(|(_, rows)| rows.iter().filter_map(|r| r.image_id).collect());
    if let Some((first_name, first)) = sources.first() {
        compare(&sources, ids.as_deref(), report);
        if let (Some(order), Some(ids)) = (order, &ids) {
            against_labels_csv(order, at.split, ids, first, first_name, report);
        }
    }
    // A build whose formats state no ids: a format may know them from its files' names.
    let listed = match (&ids, order) {
        (None, Some(order)) => formats.iter().find_map(|f| f.listed_ids(at, order)),
        _ => None,
    };
    // Classes from a source that read every row the record promises, else from labels.csv
    // for the listed ids; none when the labels could not be read.
    let classes = match (sources.first(), order, &listed) {
        (Some((_, rows)), ..) => (rows.len() as u64 == at.rows)
            .then(|| rows.iter().map(|r| (r.gender, r.status)).collect()),
        (None, Some(order), Some(ids)) => ids
            .iter()
            .map(|id| order.rows.get(id).map(|&(_, g, s, _)| (g, s)))
            .collect(),
        _ => None,
    };
    let ids = ids.or_else(|| order.map(|_| listed.unwrap_or_default()));
    SplitRows { ids, classes }
}

/// Compare every source's labels with the first's, row by row; where a source carries no
/// ids (idx), the first's ids or else `ids` stand for them.
fn compare(sources: &[(String, Vec<RowLabels>)], ids: Option<&[u32]>, report: &mut VerifyReport) {
    let Some((first_name, first)) = sources.first() else {
        return;
    };
    for (name, rows) in &sources[1..] {
        if rows.len() != first.len() {
            report.problem(
                name,
                None,
                format!("{} rows, {first_name} has {}", rows.len(), first.len()),
            );
        }
        let mut shown = 0;
        for (i, (a, b)) in first.iter().zip(rows).enumerate() {
            // idx carries no ids: compare with those of the first format that has them.
            let id = a.image_id.or_else(|| ids?.get(i).copied());
            let ids_differ = matches!((id, b.image_id), (Some(x), Some(y)) if x != y);
            if (a.gender, a.status) != (b.gender, b.status) || ids_differ {
                report.problem(
                    name,
                    Some(i as u64),
                    format!("labels {b:?} disagree with {first_name}: {a:?}"),
                );
                shown += 1;
                if shown == MAX_ROW_PROBLEMS_PER_FILE {
                    break;
                }
            }
        }
    }
}

/// Each row's image must be in labels.csv, in this split, with these labels, and after
/// the row before it.
fn against_labels_csv(
    order: &LabelsOrder,
    split: Split,
    ids: &[u32],
    labels: &[RowLabels],
    name: &str,
    report: &mut VerifyReport,
) {
    let mut previous_line = 0;
    let mut shown = 0;
    for (i, (&id, l)) in ids.iter().zip(labels).enumerate() {
        let problem = match order.rows.get(&id) {
            None => Some(format!("image {id:08} is not in labels.csv")),
            Some(&(_, _, _, s)) if s != split => {
                Some(format!("image {id:08} belongs to split {s} in labels.csv"))
            }
            Some(&(_, g, s, _)) if (g, s) != (l.gender, l.status) => Some(format!(
                "image {id:08}: gender {} status {}, labels.csv says gender {g} status {s}",
                l.gender, l.status
            )),
            Some(&(line, ..)) if line <= previous_line => Some(format!(
                "image {id:08} (labels.csv line {line}) is out of labels.csv order"
            )),
            Some(&(line, ..)) => {
                previous_line = line;
                None
            }
        };
        if let Some(message) = problem {
            report.problem(name, Some(i as u64), message);
            shown += 1;
            if shown == MAX_ROW_PROBLEMS_PER_FILE {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image_id: Option<u32>, gender: u8, status: u8) -> RowLabels {
        RowLabels {
            image_id,
            gender,
            status,
        }
    }

    fn problems(report: &VerifyReport) -> Vec<String> {
        report.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn formats_must_agree_row_by_row() {
        let npz = vec![row(Some(4), 0, 1), row(Some(9), 1, 2)];
        let sources = vec![
            ("npz".to_string(), npz.clone()),
            // idx states no ids: npz's stand for them.
            ("idx".into(), vec![row(None, 0, 1), row(None, 1, 2)]),
            (
                "parquet".into(),
                vec![row(Some(4), 0, 1), row(Some(8), 1, 2)],
            ),
            ("mnist".into(), vec![row(None, 0, 3)]),
        ];
        let mut report = VerifyReport::default();
        compare(&sources, Some(&[4, 9]), &mut report);
        assert_eq!(
            problems(&report),
            [
                "parquet: row 1: labels RowLabels { image_id: Some(8), gender: 1, status: 2 } \
                 disagree with npz: RowLabels { image_id: Some(9), gender: 1, status: 2 }",
                "mnist: 1 rows, npz has 2",
                "mnist: row 0: labels RowLabels { image_id: None, gender: 0, status: 3 } \
                 disagree with npz: RowLabels { image_id: Some(4), gender: 0, status: 1 }",
            ]
        );
    }

    #[test]
    fn rows_follow_labels_csv() {
        let order = LabelsOrder {
            rows: [
                (4, (2, 0, 1, Split::Train)),
                (9, (3, 1, 2, Split::Train)),
                (5, (4, 0, 0, Split::Dev)),
                (6, (5, 0, 0, Split::Train)),
            ]
            .into_iter()
            .collect(),
        };
        let labels = [row(None, 0, 1), row(None, 1, 2), row(None, 0, 0)];
        let mut report = VerifyReport::default();
        against_labels_csv(&order, Split::Train, &[4, 9, 6], &labels, "f", &mut report);
        assert!(report.is_ok(), "{:?}", problems(&report));
        against_labels_csv(
            &order,
            Split::Train,
            &[9, 4, 5, 7],
            &labels,
            "f",
            &mut report,
        );
        assert_eq!(
            problems(&report),
            [
                "f: row 0: image 00000009: gender 0 status 1, labels.csv says gender 1 status 2",
                "f: row 1: image 00000004: gender 1 status 2, labels.csv says gender 0 status 1",
                "f: row 2: image 00000005 belongs to split dev in labels.csv",
            ]
        );
        let swapped = [row(None, 1, 2), row(None, 0, 1), row(None, 0, 0)];
        let mut report = VerifyReport::default();
        against_labels_csv(&order, Split::Train, &[9, 4, 7], &swapped, "f", &mut report);
        assert_eq!(
            problems(&report),
            [
                "f: row 1: image 00000004 (labels.csv line 2) is out of labels.csv order",
                "f: row 2: image 00000007 is not in labels.csv",
            ]
        );
    }
}
