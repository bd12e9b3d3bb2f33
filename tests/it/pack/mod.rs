//! End-to-end tests of pack: every kind of source image, every format, read back with
//! independent readers (flate2, ndarray-npy, the parquet crate, the image crate). Beside
//! them: the whole of v1.0 packed (`v1_0`), the Python readers (`interop`) and the deflate
//! measurements (`bench`).

mod bench;
mod interop;
mod v1_0;

use std::io::Read;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BinaryArray, StringArray};
use arrow_schema::{DataType, Field, Fields};
use kaokore::metadata::{ImageId, Split};
use kaokore::normalize::normalize;
use kaokore::pack::{self, PackSummary};
use kaokore::progress::Progress;
use ndarray::{Array1, Array4};
use ndarray_npy::NpzReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::support::inline::*;
use crate::support::tree;

const S: u32 = 64;

fn run(
    inline: &InlineDataset,
    opts: &kaokore::config::PackOptions,
    out: &std::path::Path,
) -> PackSummary {
    let source = MapSource::new(inline.files.clone());
    let progress = Progress::hidden("pack", inline.dataset.labelled.len() as u64);
    pack::pack(
        &inline.dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        opts,
        out,
        &progress,
    )
    .expect("pack succeeds")
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The packed ids of a split, in labels.csv order, as the fixture defines them.
fn expected_ids(inline: &InlineDataset, split: Split) -> Vec<ImageId> {
    inline
        .dataset
        .packable()
        .filter(|r| r.label.unwrap().split == split)
        .filter(|r| !matches!(inline.kinds[&r.id], Kind::Missing | Kind::Garbage))
        .map(|r| r.id)
        .collect()
}

#[test]
fn every_kind_of_image_lands_in_every_format_and_they_agree() {
    let inline = inline_dataset(40, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run(&inline, &options(S, 2, "idx,npz,parquet,images"), &out);

    // Counts: 40 images, id 3 unlabelled, one labelled id without URL; 4 missing, 4 garbage.
    let packed: u64 = summary.splits.iter().map(|s| s.packed).sum();
    assert_eq!(summary.labelled_without_url, 1);
    assert_eq!(summary.missing.len(), 4);
    assert_eq!(summary.undecodable.len(), 4);
    assert_eq!(packed, 39 - 8);
    let n = &summary.normalization;
    assert_eq!(n.decoded, packed);
    assert_eq!(n.stored_as_jpeg + n.stored_as_png, packed);
    assert_eq!(n.converted_from.get("cmyk8").copied(), Some(4));
    assert!(n.converted_from.contains_key("gray8"));
    assert!(n.converted_from.contains_key("rgba8"));
    assert!(n.converted_from.contains_key("rgb16"));
    assert!(
        n.resized >= 12,
        "200x200, 200x187, 16-bit and CMYK are resized"
    );
    assert_eq!(summary.pixel_bytes, packed * u64::from(S * S * 3));

    // Every artifact of the layout exists, and SHA256SUMS lists them all (sorted).
    let files = tree::files(&out);
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    // The build record lists SHA256SUMS, so it is not listed there itself.
    let unlisted = ["SHA256SUMS", kaokore::out::RECORD_FILE];
    for name in files.keys().filter(|k| !unlisted.contains(&k.as_str())) {
        assert!(listed.contains(&name.as_str()), "{name} not in SHA256SUMS");
    }
    assert_eq!(listed.len(), files.len() - unlisted.len());
    for split in Split::ALL {
        for name in [
            pack::idx_images_name(split),
            pack::idx_labels_name(split, "gender"),
            pack::idx_labels_name(split, "status"),
            pack::npz_images_name(split),
            pack::npz_labels_name(split),
            pack::parquet_name(split),
        ] {
            assert!(files.contains_key(&name), "{name} missing");
        }
    }
    for name in [
        "README.md",
        "CONTENT_PROVIDERS.txt",
        "croissant.json",
        "labels.csv",
        "original_tags.txt",
        "labels.metadata.en.txt",
        "labels.metadata.ja.txt",
    ] {
        assert!(files.contains_key(name), "{name} missing");
    }
    assert!(
        !files
            .keys()
            .any(|k| k.contains("staging") || k.contains("scratch"))
    );
    assert_eq!(files["labels.csv"], inline.dataset.files.labels.as_bytes());

    for split in Split::ALL {
        let ids = expected_ids(&inline, split);
        let rows = ids.len();
        let summary_split = summary.splits.iter().find(|s| s.split == split).unwrap();
        assert_eq!(summary_split.packed as usize, rows);

        // npz images: shape and values.
        let mut npz =
            NpzReader::new(std::fs::File::open(out.join(pack::npz_images_name(split))).unwrap())
                .unwrap();
        assert_eq!(npz.names().unwrap(), ["arr_0"]);
        let images: Array4<u8> = npz.by_name("arr_0").unwrap();
        assert_eq!(images.shape(), [rows, S as usize, S as usize, 3]);
        let images = images
            .as_standard_layout()
            .into_owned()
            .into_raw_vec_and_offset()
            .0;
        let row_bytes = (S * S * 3) as usize;
        for (i, id) in ids.iter().enumerate() {
            let want = normalize(inline.files[id].as_ref().unwrap(), S)
                .unwrap()
                .pixels;
            assert!(
                images[i * row_bytes..(i + 1) * row_bytes] == want[..],
                "{split} row {i} ({id}) pixels"
            );
        }

        // idx images: header + the very same bytes.
        let idx = gunzip(&out.join(pack::idx_images_name(split)));
        assert_eq!(&idx[..4], &[0, 0, 8, 4]);
        let dims: Vec<u32> = idx[4..20]
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(dims, [rows as u32, S, S, 3]);
        assert!(idx[20..] == images[..]);

        // Labels agree across idx1, labels npz and the fixture.
        let want_gender: Vec<u8> = ids
            .iter()
            .map(|id| inline.dataset.record(*id).label.unwrap().gender)
            .collect();
        let want_status: Vec<u8> = ids
            .iter()
            .map(|id| inline.dataset.record(*id).label.unwrap().status)
            .collect();
        for (label, want) in [("gender", &want_gender), ("status", &want_status)] {
            let raw = gunzip(&out.join(pack::idx_labels_name(split, label)));
            assert_eq!(&raw[..4], &[0, 0, 8, 1]);
            assert_eq!(
                u32::from_be_bytes(raw[4..8].try_into().unwrap()) as usize,
                rows
            );
            assert_eq!(&raw[8..], &want[..]);
        }
        let mut labels =
            NpzReader::new(std::fs::File::open(out.join(pack::npz_labels_name(split))).unwrap())
                .unwrap();
        let g: Array1<u8> = labels.by_name("gender").unwrap();
        let st: Array1<u8> = labels.by_name("status").unwrap();
        let image_id: Array1<i32> = labels.by_name("image_id").unwrap();
        assert_eq!(g.to_vec(), want_gender);
        assert_eq!(st.to_vec(), want_status);
        assert_eq!(
            image_id.to_vec(),
            ids.iter().map(|i| i.0 as i32).collect::<Vec<_>>()
        );

        // Parquet rows: same ids, labels, and pixels; JPEG rows keep the fetched bytes.
        let file = std::fs::File::open(out.join(pack::parquet_name(split))).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut i = 0;
        for batch in reader {
            let batch = batch.unwrap();
            let image = batch.column(0).as_struct();
            let bytes = image
                .column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap();
            let paths = image
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let pids = batch.column(1).as_primitive::<Int32Type>();
            let genders = batch.column(2).as_primitive::<Int64Type>();
            for r in 0..batch.num_rows() {
                let id = ids[i];
                assert_eq!(pids.value(r), id.0 as i32);
                assert_eq!(genders.value(r), i64::from(want_gender[i]));
                let original = inline.files[&id].as_ref().unwrap();
                let kept = matches!(inline.kinds[&id], Kind::RgbJpeg | Kind::ProgressiveJpeg);
                if kept {
                    assert_eq!(bytes.value(r), &original[..], "{id} JPEG kept unchanged");
                    assert_eq!(paths.value(r), id.file_name());
                } else {
                    assert_eq!(&bytes.value(r)[1..4], b"PNG");
                    assert_eq!(paths.value(r), id.file_name_with("png"));
                }
                let decoded = normalize(bytes.value(r), S).unwrap();
                assert!(!decoded.resized);
                assert!(
                    decoded.pixels[..] == images[i * row_bytes..(i + 1) * row_bytes],
                    "{id} parquet pixels"
                );
                // images_S/ file: the original when kept, else a JPEG of the pixels.
                let file = &files[&format!("images_{S}/{}", id.file_name())];
                if kept {
                    assert_eq!(file, original);
                } else {
                    assert_eq!(&file[..2], &[0xFF, 0xD8]);
                }
                i += 1;
            }
        }
        assert_eq!(i, rows);
    }
}

/// torchvision's `read_sn3_pascalvincent_tensor`, as MNIST/KMNIST load their files: magic
/// = type code (0x08: uint8) * 256 + dimension count, then big-endian u32 dimensions.
fn read_like_torchvision(raw: &[u8]) -> (Vec<usize>, &[u8]) {
    let magic = u32::from_be_bytes(raw[..4].try_into().unwrap());
    assert_eq!(magic / 256, 8, "uint8");
    let nd = (magic % 256) as usize;
    let dims: Vec<usize> = raw[4..4 + 4 * nd]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let data = &raw[4 + 4 * nd..];
    assert_eq!(data.len(), dims.iter().product::<usize>());
    (dims, data)
}

#[test]
fn mnist_holds_the_gray_of_the_rgb_rows_as_torchvision_reads_it() {
    let inline = inline_dataset(40, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run(&inline, &options(S, 2, "idx,npz,parquet,mnist"), &out);
    for split in Split::ALL {
        let rows = expected_ids(&inline, split).len();
        let rgb = gunzip(&out.join(pack::idx_images_name(split)));
        let gray = gunzip(&out.join(pack::mnist_images_name(split)));
        let (dims, pixels) = read_like_torchvision(&gray);
        // read_image_file asserts 3 dimensions; read_label_file asserts 1.
        assert_eq!(dims, [rows, S as usize, S as usize]);
        assert_eq!(&gray[..4], &[0, 0, 8, 3]);
        assert!(pixels == kaokore::normalize::to_gray(&rgb[20..]), "{split}");
        for label in ["gender", "status"] {
            let raw = gunzip(&out.join(pack::mnist_labels_name(split, label)));
            let (dims, labels) = read_like_torchvision(&raw);
            assert_eq!(dims, [rows]);
            let idx = gunzip(&out.join(pack::idx_labels_name(split, label)));
            assert_eq!(labels, &idx[8..], "{split} {label}");
        }
    }
    // The registry gives the card its rows, the record its format, the report its timer.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains(&format!(
        "| `mnist/kaokore-dev-images-idx3-ubyte.gz` | uint8 (N, {S}, {S}) gray, magic 0x00000803 |"
    )));
    let record = kaokore::out::BuildRecord::read(&out).unwrap().unwrap();
    assert_eq!(
        record.formats,
        ["idx", "npz", "parquet", "mnist", "preview"]
    );
    assert!(
        record
            .files
            .contains(&"mnist/kaokore-test-status-idx1-ubyte.gz".to_string())
    );
    let seconds = serde_json::to_value(&summary.seconds).unwrap();
    for name in ["idx", "npz", "parquet", "mnist", "gray", "deflate"] {
        assert!(seconds[name].as_f64().is_some(), "{name}: {seconds}");
    }
    assert!(kaokore::verify::verify(&out).unwrap().is_ok());
}

#[test]
fn parquet_schema_metadata_and_layout_are_as_specified() {
    let inline = inline_dataset(260, S, &[Kind::RgbJpeg, Kind::Jpeg200, Kind::GrayJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(&inline, &options(S, 2, "parquet"), &out);
    let files = tree::files(&out);
    assert!(
        !files
            .keys()
            .any(|k| k.starts_with("idx/") || k.starts_with("npz/"))
    );

    let path = out.join(pack::parquet_name(Split::Train));
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
    let schema = builder.schema();
    let image_fields = Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]);
    let string = |n: &str| Field::new(n, DataType::Utf8, true);
    let want = vec![
        Field::new("image", DataType::Struct(image_fields), true),
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
    ];
    let got: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    assert_eq!(got, want);

    // File metadata: huggingface features (in column order) and kaokore keys.
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    assert_eq!(
        meta.created_by(),
        Some(format!("kaokore {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let kv = meta.key_value_metadata().unwrap();
    let get = |k: &str| {
        kv.iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.clone())
            .unwrap()
    };
    let hf: serde_json::Value = serde_json::from_str(&get("huggingface")).unwrap();
    let features = &hf["info"]["features"];
    assert_eq!(features["image"]["_type"], "Image");
    assert_eq!(features["gender"]["_type"], "ClassLabel");
    assert_eq!(
        features["gender"]["names"],
        serde_json::json!(["male", "female"])
    );
    assert_eq!(
        features["status"]["names"],
        serde_json::json!(["noble", "warrior", "incarnation", "commoner"])
    );
    assert_eq!(features["image_id"]["dtype"], "int32");
    assert_eq!(features["tags"]["_type"], "Sequence");
    let raw = get("huggingface");
    let order: Vec<usize> = want
        .iter()
        .map(|f| raw.find(&format!("\"{}\":", f.name())).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "features in column order"
    );
    let kk: serde_json::Value = serde_json::from_str(&get("kaokore")).unwrap();
    assert_eq!(kk["dataset_version"], "1.0");
    assert_eq!(kk["doi"], kaokore::DOI);
    assert_eq!(kk["license"], kaokore::LICENSE);
    assert_eq!(kk["attribution"], kaokore::ATTRIBUTION);
    assert_eq!(kk["size"], S);

    // Row groups of 100 rows; image.bytes plain and uncompressed, the rest zstd.
    let md = reader.metadata();
    let train_rows = expected_ids(&inline, Split::Train).len();
    assert!(train_rows > 100);
    let sizes: Vec<i64> = md.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes.iter().sum::<i64>() as usize, train_rows);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 100),
        "{sizes:?}"
    );
    for g in md.row_groups() {
        for c in g.columns() {
            let path = c.column_path().string();
            if path == "image.bytes" {
                assert_eq!(c.compression(), Compression::UNCOMPRESSED);
                assert!(
                    c.dictionary_page_offset().is_none(),
                    "no dictionary on image bytes"
                );
                assert!(!c.encodings().any(|e| matches!(
                    e,
                    parquet::basic::Encoding::RLE_DICTIONARY
                        | parquet::basic::Encoding::PLAIN_DICTIONARY
                )));
            } else {
                assert!(
                    matches!(c.compression(), Compression::ZSTD(_)),
                    "{path} compressed with zstd"
                );
            }
        }
    }

    // Parsed metadata columns carry the tags.
    let batch = builder.build().unwrap().next().unwrap().unwrap();
    let id = batch.column(1).as_primitive::<Int32Type>().value(0) as u32;
    let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    assert_eq!(
        col("source_title").as_string::<i32>().value(0),
        format!("作品{id}")
    );
    assert_eq!(
        col("year_from").as_primitive::<Int32Type>().value(0),
        1500 + id as i32
    );
    assert_eq!(col("era").as_string::<i32>().value(0), "江戸前期");
    let tags = col("tags");
    let tags = tags.as_list::<i32>().value(0);
    let tags = tags.as_string::<i32>();
    assert_eq!(
        tags.iter().flatten().collect::<Vec<_>>(),
        ["唐のたいしやう", &format!("t{id}")]
    );
    let provider = col("provider");
    let url = col("url");
    assert!(url.as_string::<i32>().value(0).starts_with("http"));
    assert!(provider.is_valid(0) || url.as_string::<i32>().value(0).contains("127.0.0.1"));
}

#[test]
fn output_is_identical_for_any_thread_count_and_arrival_order() {
    let inline = inline_dataset(90, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    // The last run gets JPEGs with their pixels decoded beforehand, as in a build.
    let runs = [
        (1, 0, false),
        (2, 0, false),
        (2, 6, false),
        (3, 4, false),
        (2, 3, true),
    ];
    for (k, (jobs, delay, predecoded)) in runs.into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        let mut source = MapSource::jittery(inline.files.clone(), delay, 7 + k as u64);
        source.predecoded = predecoded;
        let progress = Progress::hidden("pack", 0);
        pack::pack(
            &inline.dataset,
            &source,
            &kaokore::pipeline::IMAGE_CHAIN,
            &options(S, jobs, "idx,npz,parquet,images,mnist"),
            &out,
            &progress,
        )
        .unwrap();
        trees.push(tree::files(&out));
    }
    for t in &trees[1..] {
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            trees[0].keys().collect::<Vec<_>>()
        );
        for (name, bytes) in t {
            assert!(*bytes == trees[0][name], "{name} differs between runs");
        }
    }
}

#[test]
fn repacking_replaces_old_artifacts_and_removes_dropped_formats() {
    let inline = inline_dataset(12, S, &[Kind::RgbJpeg, Kind::NonSquare]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(&inline, &options(S, 2, "idx,npz,parquet"), &out);
    std::fs::write(out.join("report.json"), "{}").unwrap();
    let summary = run(&inline, &options(S, 2, "parquet"), &out);
    let files = tree::files(&out);
    assert!(
        !files
            .keys()
            .any(|k| k.starts_with("idx/") || k.starts_with("npz/")),
        "{:?}",
        files.keys()
    );
    assert!(!out.join("idx").exists() && !out.join("npz").exists());
    assert!(files.contains_key("report.json"), "not ours to remove");
    assert_eq!(summary.removed_stale.len(), 15);
    assert!(summary.artifacts.iter().any(|a| a.path == "SHA256SUMS"));
}

#[test]
fn a_failed_pack_leaves_no_artifact() {
    let inline = inline_dataset(12, S, &[Kind::RgbJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A build, then a file of the user's where the next build's npz goes: that pack fails
    // late, at its commit, after every image was packed.
    run(&inline, &options(S, 2, "idx"), &out);
    std::fs::create_dir_all(out.join("npz")).unwrap();
    std::fs::write(out.join(pack::npz_images_name(Split::Train)), "mine").unwrap();
    let source = MapSource::new(inline.files.clone());
    let progress = Progress::hidden("pack", 0);
    let before = tree::files(&out);
    let err = pack::pack(
        &inline.dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, "idx,npz,parquet"),
        &out,
        &progress,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("was not written by kaokore"),
        "{err}"
    );
    assert_eq!(tree::files(&out), before, "no new or changed file");
    assert!(std::fs::read_dir(&out).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".kaokore-staging")
    }));
}

#[test]
fn the_dataset_card_says_what_upstream_asks() {
    let inline = inline_dataset(20, S, &[Kind::RgbJpeg, Kind::GrayJpeg, Kind::NonSquare]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run(&inline, &options(S, 2, "idx,npz,parquet,images"), &out);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    if std::env::var_os("KAOKORE_SHOW_CARD").is_some() {
        eprintln!("{card}");
    }
    for needle in [
        kaokore::ATTRIBUTION,
        kaokore::LICENSE,
        kaokore::REDISTRIBUTION_REQUEST,
        kaokore::CITATION,
        "do not redistribute",
        "@inproceedings{tian2020kaokore",
        "Lanczos3",
        "npz/kaokore-train-imgs.npz",
        "idx/kaokore-train-images-idx4-ubyte.gz",
        "parquet/train-00000-of-00001.parquet",
        "images_64/",
        "pd.read_parquet",
        "pl.read_parquet",
        "load_dataset(\".\")",
        "np.load",
        "gender 1 (female)",
        "status 3 (commoner)",
    ] {
        assert!(card.contains(needle), "card lacks {needle:?}");
    }
    let train = summary
        .splits
        .iter()
        .find(|s| s.split == Split::Train)
        .unwrap();
    assert!(card.contains(&format!("| train | {} |", train.packed)));
    let providers = std::fs::read_to_string(out.join("CONTENT_PROVIDERS.txt")).unwrap();
    for p in kaokore::metadata::Provider::ALL {
        assert!(providers.contains(p.name()));
    }
    assert!(providers.contains(kaokore::ATTRIBUTION));
    // Nothing that changes from run to run.
    assert!(!card.contains(dir.path().to_str().unwrap()));
}

#[test]
fn staging_left_by_a_killed_pack_is_cleaned_up() {
    let inline = inline_dataset(8, S, &[Kind::RgbJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // What a pack killed mid-way leaves: a staging directory of a process that is gone.
    let abandoned = out.join(".kaokore-staging-999999999-0/npz");
    std::fs::create_dir_all(&abandoned).unwrap();
    std::fs::write(abandoned.join("kaokore-train-imgs.npz"), "half a file").unwrap();
    run(&inline, &options(S, 1, "npz"), &out);
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".kaokore-staging")),
        "{names:?}"
    );
    assert!(kaokore::verify::verify(&out).unwrap().is_ok());
}
