//! WebDataset: `webdataset/{split}-{NNNNNN}.tar` shards for streaming training, one sample
//! per row in labels.csv order, key = the 8-digit image id: `{key}.jpg`, `{key}.gender.cls`,
//! `{key}.status.cls` (decimal class index, no newline, as webdataset's own writer makes
//! it) and `{key}.json` (ids, labels with class names, split, URL, provider, metadata).
//!
//! The tar is written here, streamed and hashed as it goes, with fixed headers (ustar,
//! mtime 0, uid/gid 0, no user or group name, mode 0644), so a shard depends on its samples
//! only. `verify` reads the shards back with [`ShardStream`]: the labels of each sample, and
//! its image member, which verify compares with the RGB rows of the other formats.
//!
//! The image member is a JPEG in every sample (readers infer their columns from the first
//! samples, so one extension throughout): the fetched file unchanged when it already is an
//! S x S RGB JPEG, else the normalized pixels as JPEG (the `images` format's bytes). JPEG
//! rather than PNG: shards a fraction of the size, the upstream file itself for images that
//! needed no change, and still checkable exactly (an unchanged file decodes to the npz
//! row; a re-encoded one is byte for byte the JPEG of the npz row).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use super::format::{CardRow, FileSink, Format, FormatOption, Payload, SHARD_SIZE, WriterContext};
use super::read::{
    Channels, MAX_ROW_PROBLEMS_PER_FILE, PixelSource, Problems, RowLabels, RowRead, SplitAt,
    open_artifact,
};
use super::stream::HashingFile;
use super::{Artifact, FinishContext, FormatWriter, PackError, PackedRow};
use crate::metadata::{ClassNames, Split};

/// The directory of the shards in `--out`.
pub const WEBDATASET_DIR: &str = "webdataset";
/// The fixed modification time of every member (the epoch: a shard carries no date).
const MTIME: u64 = 0;
const BLOCK: u64 = 512;
/// Two zero blocks end a tar archive.
const END_BLOCKS: u64 = 2 * BLOCK;
/// The members of a sample after `{key}.`, in the order they are written.
const MEMBERS: [&str; 4] = ["jpg", "gender.cls", "status.cls", "json"];
/// A `{key}.json` member is a few hundred bytes; more is not one of ours.
const MAX_JSON_BYTES: u64 = 1 << 20;

/// `webdataset/{split}-{NNNNNN}.tar`
pub fn shard_name(split: Split, shard: u32) -> String {
    format!("{WEBDATASET_DIR}/{split}-{shard:06}.tar")
}

/// The WebDataset shards.
pub(crate) struct WebDataset;

impl Format for WebDataset {
    fn name(&self) -> &'static str {
        "webdataset"
    }

    fn about(&self) -> &'static str {
        "webdataset/{split}-NNNNNN.tar: shards for streaming training (--shard-size)"
    }

    fn needs(&self) -> &'static [Payload] {
        // The `images` files' bytes: one JPEG member per sample (see the module's notes).
        &[Payload::JpegFile]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        Vec::new() // their number depends on the shard size: see `listed_files`
    }

    fn dirs(&self, _size: u32) -> Vec<String> {
        vec![WEBDATASET_DIR.to_string()]
    }

    fn listed_files(&self, _size: u32, listed: &[String]) -> Result<Vec<String>, String> {
        listed_shards(listed)
    }

    fn card_rows(&self, _size: u32) -> Vec<CardRow> {
        vec![CardRow {
            split: None,
            file: format!("{WEBDATASET_DIR}/{{split}}-NNNNNN.tar"),
            content: "WebDataset shards: per sample `{key}.jpg`, `{key}.gender.cls`, \
                      `{key}.status.cls`, `{key}.json`; key = image id"
                .into(),
        }]
    }

    fn options(&self) -> &'static [&'static FormatOption] {
        &[&SHARD_SIZE]
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/x-tar"
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(WebDatasetWriter::create(
            ctx.sink,
            &ctx.dataset.class_names,
            ctx.opts.option(&SHARD_SIZE),
        )?))
    }

    fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        Some(read_labels(at, report))
    }

    fn open_pixels(
        &self,
        at: &SplitAt<'_>,
        _report: &mut Problems,
    ) -> Option<Box<dyn PixelSource>> {
        // Problems opening a shard were reported when the labels were read.
        Some(Box::new(ShardImages {
            stream: ShardStream::new(at),
        }))
    }
}

/// Which of `files` (a build record's list) are shards, checked to be `{split}-NNNNNN.tar`
/// numbered from 000000 without a gap in every split: the shards a build of the record
/// holds (their number depends on the shard size).
pub fn listed_shards(files: &[String]) -> Result<Vec<String>, String> {
    let prefix = format!("{WEBDATASET_DIR}/");
    let mut shards = Vec::new();
    for split in Split::ALL {
        let mut numbers = Vec::new();
        for f in files.iter().filter(|f| f.starts_with(&prefix)) {
            let name = &f[prefix.len()..];
            let parsed = name
                .strip_suffix(".tar")
                .and_then(|n| n.rsplit_once('-'))
                .filter(|(_, d)| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()));
            match parsed {
                Some((s, d)) if s == split.name() => numbers.push(d.parse::<u32>().unwrap_or(0)),
                Some((s, _)) if Split::ALL.iter().any(|x| x.name() == s) => {}
                _ => return Err(format!("lists {f:?}, not a shard of {prefix}")),
            }
        }
        numbers.sort_unstable();
        if numbers.is_empty() || numbers.iter().enumerate().any(|(i, &n)| n != i as u32) {
            return Err(format!(
                "the {split} shards it lists are not {} numbered from 000000",
                shard_name(split, 0)
            ));
        }
        shards.extend(numbers.into_iter().map(|n| shard_name(split, n)));
    }
    Ok(shards)
}

/// The 512-byte ustar header of a regular file `name` of `size` bytes, as every member is
/// written: mode 0644, uid/gid 0, no user or group name, mtime [`MTIME`].
pub fn tar_header(name: &str, size: u64) -> io::Result<[u8; 512]> {
    if name.is_empty() || name.len() > 100 || !name.is_ascii() {
        return Err(io::Error::other(format!(
            "tar member name {name:?} does not fit"
        )));
    }
    if size >= 1 << 33 {
        return Err(io::Error::other(format!("tar member {name} is too large")));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // Device numbers stay empty (NUL), as Python's tarfile leaves them for regular files.
    // The checksum is taken with its own field as spaces, then written as 6 digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Zero-padded octal digits filling all but the last byte of `field`, then NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    field[..width].copy_from_slice(format!("{value:0width$o}").as_bytes());
    field[width] = 0;
}

/// Bytes a member of `len` bytes takes in a tar: its header and its data padded to a block.
fn member_bytes(len: u64) -> u64 {
    BLOCK + len.div_ceil(BLOCK) * BLOCK
}

/// A tar archive written member by member into `out`.
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.out.write_all(&tar_header(name, data.len() as u64)?)?;
        self.out.write_all(data)?;
        let pad = (BLOCK - data.len() as u64 % BLOCK) % BLOCK;
        self.out.write_all(&[0u8; 512][..pad as usize])?;
        self.written += member_bytes(data.len() as u64);
        Ok(())
    }

    /// Write the two closing zero blocks; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; END_BLOCKS as usize])?;
        Ok(self.out)
    }
}

/// The members of one sample, in [`MEMBERS`] order.
fn sample_members(row: &PackedRow<'_>, image: &[u8], names: &ClassNames) -> Vec<(String, Vec<u8>)> {
    let key = row.record.id.to_string();
    let json = sample_json(row, names);
    let data = [
        image.to_vec(),
        row.label.gender.to_string().into_bytes(),
        row.label.status.to_string().into_bytes(),
        json,
    ];
    MEMBERS
        .iter()
        .zip(data)
        .map(|(ext, d)| (format!("{key}.{ext}"), d))
        .collect()
}

/// `{key}.json`. Every field has the same JSON type in every sample: `datasets`' webdataset
/// loader infers its columns from the first five samples and cannot fill a column it saw
/// only as null (or as an empty list) later. So text upstream does not give is `""`, a
/// year it does not give is `0`, and `tags` is the タグ values joined by `;` (upstream's
/// separator, which no value contains).
fn sample_json(row: &PackedRow<'_>, names: &ClassNames) -> Vec<u8> {
    let tags = row.record.tags.as_deref();
    let text = |f: fn(&crate::metadata::Tags) -> &Option<String>| {
        tags.and_then(|t| f(t).clone()).unwrap_or_default()
    };
    let class = |names: &[String], i: u8| names.get(usize::from(i)).cloned().unwrap_or_default();
    let value = serde_json::json!({
        "image_id": row.record.id.0,
        "split": row.split.name(),
        "gender": row.label.gender,
        "gender_name": class(&names.gender, row.label.gender),
        "status": row.label.status,
        "status_name": class(&names.status, row.label.status),
        "url": row.record.url.clone().unwrap_or_default(),
        "provider": row.record.provider().map(|p| p.name()).unwrap_or_default(),
        "source_title": text(|t| &t.source_title),
        "source_id": text(|t| &t.source_id),
        "orientation": text(|t| &t.orientation),
        "era": text(|t| &t.era),
        "holder": text(|t| &t.holder),
        "year_from": tags.and_then(|t| t.year_from).unwrap_or(0),
        "year_to": tags.and_then(|t| t.year_to).unwrap_or(0),
        "tags": tags.map(|t| t.tags.join(";")).unwrap_or_default(),
        "original_tags": tags.map(|t| t.raw.clone()).unwrap_or_default(),
    });
    serde_json::to_vec(&value).expect("JSON of plain values")
}

/// The shard of a split being written.
struct Shard {
    name: String,
    tar: TarWriter<HashingFile>,
    samples: u64,
}

impl Shard {
    fn create(sink: &dyn FileSink, split: Split, number: u32) -> Result<Shard, PackError> {
        let name = shard_name(split, number);
        let file = HashingFile::new(sink.create(&name)?);
        Ok(Shard {
            name,
            tar: TarWriter::new(file),
            samples: 0,
        })
    }

    fn close(self) -> Result<Artifact, PackError> {
        let close = || self.tar.finish()?.finish();
        let (bytes, sha256) = close().map_err(PackError::io(&self.name))?;
        Ok(Artifact {
            path: self.name,
            bytes,
            sha256,
        })
    }
}

/// Writes the shards of the three splits; a split's next shard starts when the next
/// sample would take the current one past `max_bytes` (closing blocks included).
struct WebDatasetWriter<'a> {
    sink: &'a dyn FileSink,
    max_bytes: u64,
    names: ClassNames,
    /// The open shard and its number, per split. Every split has at least shard 000000.
    open: Vec<(u32, Shard)>,
    closed: Vec<Artifact>,
}

impl<'a> WebDatasetWriter<'a> {
    fn create(
        sink: &'a dyn FileSink,
        names: &ClassNames,
        max_bytes: u64,
    ) -> Result<WebDatasetWriter<'a>, PackError> {
        let open = Split::ALL
            .iter()
            .map(|&split| Ok((0, Shard::create(sink, split, 0)?)))
            .collect::<Result<_, PackError>>()?;
        Ok(WebDatasetWriter {
            sink,
            max_bytes: max_bytes.max(1),
            names: names.clone(),
            open,
            closed: Vec::new(),
        })
    }
}

impl FormatWriter for WebDatasetWriter<'_> {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let members = sample_members(row, row.payloads.jpeg()?, &self.names);
        let bytes: u64 = members
            .iter()
            .map(|(_, d)| member_bytes(d.len() as u64))
            .sum();
        let (number, shard) = &mut self.open[row.split.index()];
        if shard.samples > 0 && shard.tar.written() + bytes + END_BLOCKS > self.max_bytes {
            *number += 1;
            let next = Shard::create(self.sink, row.split, *number)?;
            self.closed.push(std::mem::replace(shard, next).close()?);
        }
        for (name, data) in &members {
            shard
                .tar
                .append(name, data)
                .map_err(PackError::io(&shard.name))?;
        }
        shard.samples += 1;
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let WebDatasetWriter { open, closed, .. } = *self;
        let mut artifacts = closed;
        for (_, shard) in open {
            artifacts.push(shard.close()?);
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let produced = artifacts.iter().map(|a| a.path.clone()).collect();
        ctx.hashed.extend(artifacts);
        Ok(produced)
    }
}

/// The shards of one split as `verify` reads them: every header exactly as written here,
/// each sample's four members under one 8-digit key, sizes checked against the file before
/// anything is read into memory. Reading stops at the first member that is not as written
/// (what follows cannot be trusted to line up).
struct ShardStream {
    dir: PathBuf,
    /// The split's shards, in order.
    shards: Vec<String>,
    /// The next shard to open.
    next: usize,
    /// The shard being read, with its name and the samples read from it.
    open: Option<(String, ShardReader, u64)>,
    /// The shards found to hold no sample, by number.
    empty: Vec<usize>,
    /// The most bytes an image member may have.
    max_image: u64,
}

impl ShardStream {
    fn new(at: &SplitAt<'_>) -> ShardStream {
        let prefix = format!("{WEBDATASET_DIR}/{}-", at.split);
        // The record lists them numbered from 000000 without a gap (see `listed_shards`);
        // sorted by name is sorted by number.
        let shards = at
            .files
            .iter()
            .filter(|f| f.starts_with(&prefix))
            .cloned()
            .collect();
        let size = u64::from(at.size);
        ShardStream {
            dir: at.dir.to_path_buf(),
            shards,
            next: 0,
            open: None,
            empty: Vec::new(),
            // An image is at most twice its raw pixels, plus room for a fetched file's
            // metadata.
            max_image: 2 * 3 * size * size + (1 << 20),
        }
    }

    /// The shard being read (or the first, before any is opened).
    fn current(&self) -> &str {
        match &self.open {
            Some((name, ..)) => name,
            None => self.shards.get(self.next).map_or(WEBDATASET_DIR, |s| s),
        }
    }

    /// The next sample, `None` after the last shard. An error names the problem (in
    /// [`ShardStream::current`]); nothing follows it.
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        loop {
            if let Some((_, reader, samples)) = &mut self.open {
                match reader.next_sample(self.max_image)? {
                    Some(sample) => {
                        *samples += 1;
                        return Ok(Some(sample));
                    }
                    None => {
                        if *samples == 0 {
                            self.empty.push(self.next - 1);
                        }
                        self.open = None;
                    }
                }
            }
            let Some(name) = self.shards.get(self.next).cloned() else {
                return Ok(None);
            };
            let reader = open_artifact(&self.dir, &name).and_then(ShardReader::new)?;
            self.open = Some((name, reader, 0));
            self.next += 1;
        }
    }
}

/// Read a split's samples for `verify`: their labels (the cls members agreeing with the
/// JSON member), as many as the build's record says, and no shard empty but a split's only
/// one. Problems go to `report`, with the shard and the row in the split.
fn read_labels(at: &SplitAt<'_>, report: &mut Problems) -> (String, Vec<RowLabels>) {
    let mut stream = ShardStream::new(at);
    let mut labels = Vec::new();
    let mut shown = 0;
    loop {
        let row = labels.len() as u64;
        let sample = match stream.next_sample() {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                report.problem(stream.current(), Some(row), e);
                break;
            }
        };
        if let Err(e) = sample.check_labels(at.split)
            && shown < MAX_ROW_PROBLEMS_PER_FILE
        {
            report.problem(stream.current(), Some(row), e);
            shown += 1;
        }
        labels.push(RowLabels {
            image_id: Some(sample.labels.image_id),
            gender: sample.labels.gender,
            status: sample.labels.status,
        });
    }
    // Only a split's single shard may hold no sample (an empty split).
    if stream.shards.len() > 1 {
        for &k in &stream.empty {
            report.problem(
                &stream.shards[k],
                None,
                format!("shard {k} holds no sample"),
            );
        }
    }
    let read = labels.len() as u64;
    if read != at.rows {
        let first = stream.shards.first().map_or(WEBDATASET_DIR, String::as_str);
        report.problem(
            first,
            None,
            format!(
                "{read} samples in the {} shards, the build's record says {}",
                at.split, at.rows
            ),
        );
    }
    (format!("{WEBDATASET_DIR}/{}-*.tar", at.split), labels)
}

/// The image members of a split's samples, in order, as JPEG files for verify to compare
/// with the RGB rows of the other formats (see [`PixelSource::jpeg_files`]).
struct ShardImages {
    stream: ShardStream,
}

impl PixelSource for ShardImages {
    fn name(&self) -> &str {
        self.stream.current()
    }

    fn channels(&self) -> Channels {
        Channels::Rgb
    }

    fn jpeg_files(&self) -> bool {
        true
    }

    fn read_row(&mut self, buf: &mut Vec<u8>) -> RowRead {
        match self.stream.next_sample() {
            Ok(Some(sample)) => {
                *buf = sample.image;
                RowRead::Pixels
            }
            // The count was checked when the labels were read.
            Ok(None) => RowRead::Broken("fewer samples than the build's record says".into()),
            Err(e) => RowRead::Broken(e),
        }
    }

    fn check_end(&mut self) -> Result<(), String> {
        // Samples beyond the record's count were reported when the labels were read.
        Ok(())
    }
}

/// A sample's labels as its key and cls members state them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SampleLabels {
    image_id: u32,
    gender: u8,
    status: u8,
}

/// One sample read back.
struct Sample {
    key: String,
    labels: SampleLabels,
    image: Vec<u8>,
    json: serde_json::Value,
}

impl Sample {
    /// The JSON member agrees with the key and cls members, and names `split`.
    fn check_labels(&self, split: Split) -> Result<(), String> {
        let j = &self.json;
        let l = self.labels;
        if j["image_id"].as_u64() != Some(u64::from(l.image_id))
            || j["gender"].as_u64() != Some(u64::from(l.gender))
            || j["status"].as_u64() != Some(u64::from(l.status))
            || j["split"].as_str() != Some(split.name())
        {
            return Err(format!(
                "{}.json says image {} gender {} status {} split {}, the sample's key and cls \
                 members say image {} gender {} status {} in split {split}",
                self.key,
                j["image_id"],
                j["gender"],
                j["status"],
                j["split"],
                l.image_id,
                l.gender,
                l.status
            ));
        }
        Ok(())
    }
}

/// A shard read header by header.
struct ShardReader {
    input: BufReader<File>,
    /// Bytes of the file not read yet.
    left: u64,
}

impl ShardReader {
    fn new(file: File) -> Result<ShardReader, String> {
        let left = file
            .metadata()
            .map_err(|e| format!("cannot inspect: {e}"))?
            .len();
        if left % BLOCK != 0 {
            return Err(format!("{left} bytes is not a whole number of tar blocks"));
        }
        Ok(ShardReader {
            input: BufReader::with_capacity(1 << 20, file),
            left,
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.input
            .read_exact(buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        self.left -= buf.len() as u64;
        Ok(())
    }

    /// The next member: `None` at the closing zero blocks (after which nothing may follow).
    fn next_member(&mut self, max: u64) -> Result<Option<(String, Vec<u8>)>, String> {
        if self.left < BLOCK {
            return Err("ends without the two closing zero blocks".into());
        }
        let mut header = [0u8; 512];
        self.read(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            let mut second = [0u8; 512];
            if self.left != BLOCK {
                return Err(format!(
                    "{} bytes where only the second closing zero block may be",
                    self.left
                ));
            }
            self.read(&mut second)?;
            if second.iter().any(|&b| b != 0) {
                return Err("the second closing block is not zero".into());
            }
            return Ok(None);
        }
        let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..end]).into_owned();
        let size = std::str::from_utf8(&header[124..135])
            .ok()
            .and_then(|s| u64::from_str_radix(s, 8).ok())
            .ok_or_else(|| format!("member {name:?}: unreadable size"))?;
        match tar_header(&name, size) {
            Ok(expected) if expected == header => {}
            _ => {
                return Err(format!(
                    "member {name:?}: header is not as kaokore writes it (ustar, mode 0644, \
                     uid/gid 0, no owner names, mtime 0, valid checksum)"
                ));
            }
        }
        let padded = size.div_ceil(BLOCK) * BLOCK;
        if size > max || padded > self.left {
            return Err(format!(
                "member {name:?}: {size} bytes is more than it can hold or the file has left"
            ));
        }
        let mut data = vec![0u8; padded as usize];
        self.read(&mut data)?;
        if data[size as usize..].iter().any(|&b| b != 0) {
            return Err(format!("member {name:?}: padding is not zero"));
        }
        data.truncate(size as usize);
        Ok(Some((name, data)))
    }

    /// The next sample's four members, or `None` at the end of the shard.
    fn next_sample(&mut self, max_image: u64) -> Result<Option<Sample>, String> {
        let mut key = String::new();
        let mut data: Vec<Vec<u8>> = Vec::with_capacity(MEMBERS.len());
        for (i, ext) in MEMBERS.iter().enumerate() {
            let max = match i {
                0 => max_image,
                3 => MAX_JSON_BYTES,
                _ => 3,
            };
            let Some((name, bytes)) = self.next_member(max)? else {
                if i == 0 {
                    return Ok(None);
                }
                return Err(format!("sample {key} ends without its .{ext} member"));
            };
            if i == 0 {
                key = name.strip_suffix(".jpg").unwrap_or("").to_string();
                if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "member {name:?} where a sample's NNNNNNNN.jpg should start"
                    ));
                }
            } else if name != format!("{key}.{ext}") {
                return Err(format!("member {name:?} where {key}.{ext} should be"));
            }
            data.push(bytes);
        }
        let class = |bytes: &[u8], ext: &str| {
            std::str::from_utf8(bytes)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u8>().ok())
                .ok_or_else(|| format!("{key}.{ext} is not a decimal class index"))
        };
        let labels = SampleLabels {
            image_id: key.parse().unwrap_or(0),
            gender: class(&data[1], "gender.cls")?,
            status: class(&data[2], "status.cls")?,
        };
        let json =
            serde_json::from_slice(&data[3]).map_err(|e| format!("{key}.json is not JSON: {e}"))?;
        let image = std::mem::take(&mut data[0]);
        Ok(Some(Sample {
            key,
            labels,
            image,
            json,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::format::testing::{self, SIZE};
    use std::collections::BTreeMap;

    /// The members of a tar archive as read here, independently of [`ShardReader`]: each
    /// header a ustar header of a regular file (mode 0644, mtime 0) with a valid checksum,
    /// data padded with zeros to a block, two zero blocks at the end and nothing after.
    fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        assert_eq!(bytes.len() % 512, 0);
        let mut members = Vec::new();
        let mut at = 0;
        loop {
            let h = &bytes[at..at + 512];
            if h.iter().all(|&b| b == 0) {
                assert_eq!(bytes.len() - at, 1024, "two closing blocks, then the end");
                assert!(bytes[at..].iter().all(|&b| b == 0));
                return members;
            }
            let field = |from: usize, to: usize| {
                let text = std::str::from_utf8(&h[from..to]).unwrap();
                text.trim_end_matches(['\0', ' ']).to_string()
            };
            let number = |from, to| u64::from_str_radix(&field(from, to), 8).unwrap();
            let sum: u64 = (0..512)
                .map(|i| match i {
                    148..156 => u64::from(b' '),
                    _ => u64::from(h[i]),
                })
                .sum();
            assert_eq!(number(148, 156), sum, "header checksum");
            assert_eq!(&h[257..265], b"ustar\x0000");
            assert_eq!(
                (h[156], number(100, 108), number(136, 148)),
                (b'0', 0o644, 0)
            );
            let size = number(124, 136) as usize;
            let padded = size.div_ceil(512) * 512;
            let data = &bytes[at + 512..at + 512 + padded];
            assert!(data[size..].iter().all(|&b| b == 0), "zero padding");
            members.push((field(0, 100), data[..size].to_vec()));
            at += 512 + padded;
        }
    }

    /// A sample as read back: its key and members.
    struct ReadSample {
        key: String,
        members: Vec<(String, Vec<u8>)>,
    }

    /// Write the test rows into shards of at most `max_bytes`; check every sample of every
    /// split, in row order, and how the samples were cut into shards; returns each shard's
    /// samples by name.
    fn check(max_bytes: u64) -> BTreeMap<String, Vec<ReadSample>> {
        let dataset = testing::dataset();
        let mut opts = testing::options("webdataset");
        opts.set_option(&SHARD_SIZE, max_bytes);
        let w = testing::write(&WebDataset, &dataset, &opts, &[]);
        w.check_files();
        assert_eq!(
            w.produced.len(),
            w.hashed.len(),
            "every shard hashed while written"
        );
        let mut listed = listed_shards(&w.produced).unwrap();
        listed.sort();
        assert_eq!(listed, w.produced);

        let mut shards = BTreeMap::new();
        for name in &w.produced {
            let members = untar(&w.sink.bytes(name));
            let samples: Vec<ReadSample> = members
                .chunks(4)
                .map(|m| ReadSample {
                    key: m[0].0.strip_suffix(".jpg").unwrap().to_string(),
                    members: m.to_vec(),
                })
                .collect();
            shards.insert(name.clone(), samples);
        }
        let dir = w.on_disk();
        let listed = w.listed();
        let names = &dataset.class_names;
        for split in Split::ALL {
            let rows = testing::rows(&dataset, split, &[]);
            let split_shards: Vec<(&String, &Vec<ReadSample>)> = shards
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("webdataset/{split}-")))
                .collect();
            let samples: Vec<&ReadSample> = split_shards.iter().flat_map(|(_, s)| *s).collect();
            assert_eq!(samples.len(), rows.len());
            for (record, sample) in rows.iter().zip(&samples) {
                let id = record.id.0;
                let key = format!("{id:08}");
                let label = record.label.unwrap();
                assert_eq!(sample.key, key);
                let member_names: Vec<&str> =
                    sample.members.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(member_names, MEMBERS.map(|ext| format!("{key}.{ext}")));
                let jpeg = crate::encode::encode_jpeg(&testing::pixels(id), SIZE).unwrap();
                assert!(sample.members[0].1 == jpeg);
                assert_eq!(sample.members[1].1, label.gender.to_string().as_bytes());
                assert_eq!(sample.members[2].1, label.status.to_string().as_bytes());
                let json: serde_json::Value = serde_json::from_slice(&sample.members[3].1).unwrap();
                assert_eq!(json["image_id"], id);
                assert_eq!(json["split"], split.name());
                assert_eq!(json["gender_name"], names.gender[usize::from(label.gender)]);
                assert_eq!(json["status_name"], names.status[usize::from(label.status)]);
                assert_eq!(json["url"], record.url.clone().unwrap());
                assert_eq!(json["provider"], record.provider().unwrap().name());
                let (tags, year) = if id == 4 {
                    ("烏帽子;扇", 1600)
                } else {
                    ("", 0)
                };
                assert_eq!(
                    (&json["tags"], &json["year_from"]),
                    (&tags.into(), &year.into())
                );
            }
            // A shard ends only where its next sample would have taken it past the limit.
            let sizes: Vec<u64> = split_shards
                .iter()
                .map(|(n, _)| w.sink.bytes(n).len() as u64)
                .collect();
            for (k, (_, shard)) in split_shards.iter().enumerate() {
                assert!(
                    sizes[k] <= max_bytes || shard.len() == 1,
                    "shard {k} of {split}"
                );
                if let Some((_, next)) = split_shards.get(k + 1) {
                    let first: u64 = next[0]
                        .members
                        .iter()
                        .map(|(_, d)| member_bytes(d.len() as u64))
                        .sum();
                    assert!(
                        sizes[k] + first > max_bytes,
                        "shard {k} of {split} had room"
                    );
                }
            }

            let n = rows.len() as u64;
            let at = testing::split_at(dir.path(), &listed, split, n, None);
            let mut problems = Problems::default();
            let (_, labels) = WebDataset.read_labels(&at, &mut problems).unwrap();
            let expected: Vec<RowLabels> = rows
                .iter()
                .map(|r| RowLabels {
                    image_id: Some(r.id.0),
                    gender: r.label.unwrap().gender,
                    status: r.label.unwrap().status,
                })
                .collect();
            assert_eq!(labels, expected);
            let source = WebDataset.open_pixels(&at, &mut problems).unwrap();
            let files: Vec<Vec<u8>> = samples.iter().map(|s| s.members[0].1.clone()).collect();
            assert!(testing::read_all(source, rows.len()) == files);
            assert!(problems.is_empty(), "{:?}", &problems[..]);
        }
        shards
    }

    #[test]
    fn samples_are_written_in_row_order_one_shard_per_split() {
        let shards = check(SHARD_SIZE.default_value());
        assert_eq!(shards.len(), 3);
    }

    #[test]
    fn a_split_starts_its_next_shard_before_the_sample_that_would_pass_the_limit() {
        // Train's first two samples and the closing blocks make the limit exactly: the
        // first shard holds them, the third sample starts the second shard.
        let one = check(SHARD_SIZE.default_value());
        let train = &one[&shard_name(Split::Train, 0)];
        let sample = |s: &ReadSample| -> u64 {
            s.members
                .iter()
                .map(|(_, d)| member_bytes(d.len() as u64))
                .sum()
        };
        let limit = sample(&train[0]) + sample(&train[1]) + END_BLOCKS;
        let shards = check(limit);
        assert_eq!(shards[&shard_name(Split::Train, 0)].len(), 2);
        assert_eq!(shards[&shard_name(Split::Train, 1)].len(), 1);
        // A limit below one sample: one sample per shard.
        let shards = check(1);
        assert_eq!(shards.len(), 6);
    }

    #[test]
    fn listed_shards_must_be_numbered_without_gaps() {
        let files = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let good = files(&[
            "webdataset/train-000000.tar",
            "webdataset/train-000001.tar",
            "webdataset/dev-000000.tar",
            "webdataset/test-000000.tar",
            "npz/kaokore-dev-imgs.npz",
        ]);
        assert_eq!(listed_shards(&good).unwrap().len(), 4);
        let gap = files(&[
            "webdataset/train-000000.tar",
            "webdataset/train-000002.tar",
            "webdataset/dev-000000.tar",
            "webdataset/test-000000.tar",
        ]);
        assert!(listed_shards(&gap).unwrap_err().contains("train"));
        let none = files(&["webdataset/train-000000.tar", "webdataset/dev-000000.tar"]);
        assert!(listed_shards(&none).unwrap_err().contains("test"));
        let odd = files(&["webdataset/notes.txt"]);
        assert!(listed_shards(&odd).unwrap_err().contains("notes.txt"));
    }
}
