//! The real upstream files of every version: their figures and their quirks.

use kaokore::metadata::{Provider, SizeRequest, WarningKind};
use kaokore::{Dataset, DatasetVersion, ImageId, Split};

fn dataset(v: DatasetVersion) -> Dataset {
    Dataset::embedded(v).expect("embedded metadata parses")
}

fn split_counts(d: &Dataset) -> [usize; 3] {
    let mut counts = [0; 3];
    for &id in &d.labelled {
        counts[d.record(id).label.unwrap().split.index()] += 1;
    }
    counts
}

fn warnings(d: &Dataset, kind: WarningKind) -> usize {
    d.warning_counts().get(&kind).copied().unwrap_or(0)
}

fn size_requests(d: &Dataset, size: &str) -> usize {
    d.with_url()
        .filter(|r| SizeRequest::of(r.url.as_deref().unwrap()).unwrap().0 == size)
        .count()
}

#[test]
fn v1_0_figures() {
    let d = dataset(DatasetVersion::V1_0);
    assert_eq!(d.records.len(), 5824);
    assert_eq!(d.with_url().count(), 5552);
    assert_eq!(d.labelled.len(), 5298);
    assert_eq!(split_counts(&d), [4238, 533, 527]);
    assert_eq!(warnings(&d, WarningKind::BlankUrlLine), 272);
    assert_eq!(size_requests(&d, "256,"), 5552);
    assert_eq!(d.packable().count(), 5298);
}

#[test]
fn v1_1_has_labelled_images_without_url() {
    let d = dataset(DatasetVersion::V1_1);
    assert_eq!(d.records.len(), 8845);
    assert_eq!(d.with_url().count(), 8573);
    assert_eq!(d.labelled.len(), 8215);
    assert_eq!(warnings(&d, WarningKind::BlankUrlLine), 272);
    assert_eq!(warnings(&d, WarningKind::LabelledWithoutUrl), 40);
    let without: Vec<_> = d
        .labelled
        .iter()
        .filter(|&&id| d.record(id).url.is_none())
        .collect();
    assert_eq!(without.len(), 40);
    // They are labelled, keep their id, and are not packed.
    assert_eq!(d.packable().count(), 8215 - 40);
    assert_eq!(split_counts(&d), [6568, 826, 821]);
}

#[test]
fn v1_2_figures() {
    let d = dataset(DatasetVersion::V1_2);
    assert_eq!(d.with_url().count(), 8848);
    assert_eq!(d.labelled.len(), 8446);
    assert_eq!(split_counts(&d), [6756, 845, 845]);
    assert_eq!(warnings(&d, WarningKind::BlankUrlLine), 0);
}

#[test]
fn v1_3_figures() {
    let d = dataset(DatasetVersion::V1_3);
    assert_eq!(d.records.len(), 9683);
    assert_eq!(d.with_url().count(), 9683);
    assert_eq!(d.labelled.len(), 9257);
    assert_eq!(split_counts(&d), [7405, 926, 926]);
    assert_eq!(size_requests(&d, "!200,200"), 2233);
    assert_eq!(size_requests(&d, "256,256"), 7450);
    let per_provider = |p| d.with_url().filter(|r| r.provider() == Some(p)).count();
    assert_eq!(per_provider(Provider::PreModernJapaneseText), 5351);
    assert_eq!(per_provider(Provider::KeioUniversityLibraries), 2233);
    assert_eq!(per_provider(Provider::KyotoUniversityRareMaterials), 2099);
}

#[test]
fn labelled_order_is_labels_csv_order() {
    let d = dataset(DatasetVersion::V1_3);
    let first: Vec<ImageId> = d
        .files
        .labels
        .lines()
        .skip(1)
        .take(2)
        .map(|l| ImageId(l[..8].parse().unwrap()))
        .collect();
    assert_eq!(&d.labelled[..2], &first[..]);
    assert_eq!(d.labelled[0], ImageId(7329));
    let label = d.record(ImageId(7329)).label.unwrap();
    assert_eq!(
        (label.gender, label.status, label.split),
        (1, 0, Split::Train)
    );
}

#[test]
fn class_names_of_every_version() {
    for v in DatasetVersion::ALL {
        let d = dataset(v);
        assert_eq!(d.class_names.gender, ["male", "female"]);
        assert_eq!(
            d.class_names.status,
            ["noble", "warrior", "incarnation", "commoner"]
        );
    }
}

#[test]
fn tags_repeated_keys_and_years() {
    // v1.0 line 1: 制作年 three times (from, to, era), 原典ID as the source id.
    let d = dataset(DatasetVersion::V1_0);
    let t = d.record(ImageId(0)).tags.as_ref().unwrap();
    assert_eq!(t.year_from, Some(1500));
    assert_eq!(t.year_to, Some(1600));
    assert_eq!(t.era.as_deref(), Some("室町末近世初"));
    assert_eq!(t.source_title.as_deref(), Some("ふんせう"));
    assert_eq!(t.source_id.as_deref(), Some("110X@445@3@2"));
    assert_eq!(t.holder.as_deref(), Some("慶應義塾大学"));
    assert!(t.raw.starts_with("制作年=from 1500;"));
}

#[test]
fn tags_stray_entries_and_padded_values() {
    let d = dataset(DatasetVersion::V1_3);
    // Line 9519: `00009518.jpg:=;=;タグ=唐のたいしやう;...`
    let t = d.record(ImageId(9518)).tags.as_ref().unwrap();
    assert_eq!(t.tags, ["唐のたいしやう"]);
    assert_eq!(t.source_id.as_deref(), Some("RB00000064"));
    assert_eq!(t.era, None, "an empty 制作年 gives no era");
    assert!(
        d.warnings
            .iter()
            .any(|w| w.line == 9519 && w.kind == WarningKind::StrayTagEntry)
    );
    assert_eq!(warnings(&d, WarningKind::StrayTagEntry), 8);

    // A DOI with a trailing space (v1.0) is trimmed and counted.
    let d = dataset(DatasetVersion::V1_0);
    assert!(warnings(&d, WarningKind::PaddedTagValue) > 1000);
    let padded = d
        .records
        .iter()
        .filter_map(|r| r.tags.as_ref())
        .find(|t| t.raw.contains("=10.20730/200003085 ;"))
        .expect("a padded DOI in v1.0");
    assert_eq!(padded.source_id.as_deref(), Some("10.20730/200003085"));
}

#[test]
fn v1_3_keio_and_kyoto_source_ids() {
    let d = dataset(DatasetVersion::V1_3);
    let kyoto = d.record(ImageId(0)).tags.as_ref().unwrap();
    assert_eq!(kyoto.source_id.as_deref(), Some("RB00013604"));
    assert_eq!(kyoto.tags, ["腹から膿を出す女"]);
    let keio = d
        .with_url()
        .find(|r| r.provider() == Some(Provider::KeioUniversityLibraries))
        .unwrap();
    let tags = keio.tags.as_ref().unwrap();
    assert!(tags.raw.contains("慶応義塾大学請求記号="));
    assert!(tags.source_id.is_some());
}
