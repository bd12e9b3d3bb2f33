//! The `kaokore` binary: parse the command line, call the library, print errors and set
//! the exit status (0 success, 1 runtime failure, 2 bad usage or input, 130 / 143 stopped
//! by SIGINT / SIGTERM after cleaning up). The JSON of `info --json` and `verify --json`
//! is shaped here (README, "Machine-readable output").

mod cli;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use clap::Parser;
use cli::{Cli, Command, DatasetArgs, NetworkArgs, OutputArgs, RunArgs};
use kaokore::error::NotDelivered;
use kaokore::fetch::{FailureGroup, Shortfall, group_failures};
use kaokore::info::{DatasetInfo, SplitInfo};
use kaokore::verify::VerifyReport;
use kaokore::{BuildConfig, Error, FetchOptions, PackOptions, Split, pipeline};
use serde::{Serialize, Serializer};

/// The longest `--timeout` accepted, in seconds: a day.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Failure groups (host and cause) printed at the end of a run; report.json has them all.
const MAX_GROUP_LINES: usize = 8;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    // The signal that set `stop` (0: none yet).
    let signal = Arc::new(AtomicU8::new(0));
    if matches!(
        cli.command,
        Command::Build { .. } | Command::Fetch { .. } | Command::Pack { .. }
    ) && let Err(e) = watch_signals(stop.clone(), signal.clone())
    {
        eprintln!("warning: Ctrl-C will not stop the run cleanly: {e}");
    }
    match run(cli, &stop) {
        Ok(code) => code,
        Err(Error::Interrupted) => {
            let signal = signal.load(Ordering::SeqCst);
            eprintln!(
                "interrupted: nothing in the output directory was replaced and the staging \
                 files are removed; the cache keeps every image fetched: run the same \
                 command again to resume"
            );
            ExitCode::from(128 + if signal == 0 { 2 } else { signal })
        }
        Err(Error::NotDelivered(nd)) => {
            print_not_delivered(&nd);
            ExitCode::from(1)
        }
        Err(e) => {
            print_error(&e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The error and its causes, each once: a cause its error's text already shows (many
/// errors print their source) is not repeated.
fn print_error(e: &Error) {
    let mut shown = e.to_string();
    eprintln!("error: {shown}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown.push_str(&text);
        }
        source = s.source();
    }
}

/// A run that could not deliver: what was not fetched, why that stops it, what to try,
/// and where the report is. A dozen lines at most, however many images failed, and each
/// host on one line: a host given up is named by its shortfall, not by its failures too.
fn print_not_delivered(nd: &NotDelivered) {
    let given_up: Vec<&str> = nd
        .shortfalls
        .iter()
        .filter_map(|s| match s {
            Shortfall::HostGivenUp(h) => Some(&h.original_hosts),
            _ => None,
        })
        .flatten()
        .map(String::as_str)
        .collect();
    let (groups, failed) = if given_up.is_empty() {
        (nd.groups.clone(), nd.failed)
    } else {
        let rest: Vec<FailureGroup> = nd
            .groups
            .iter()
            .filter(|g| !given_up.contains(&g.host.as_str()))
            .cloned()
            .collect();
        let failed = rest.iter().map(|g| g.images).sum();
        (rest, failed)
    };
    print_failure_groups(&groups, failed, "");
    eprintln!("error: {}", nd.headline());
    for s in &nd.shortfalls {
        eprintln!("  {s}");
    }
    if nd.network_related() {
        eprintln!(
            "hint: check the network connection and the proxy variables HTTP_PROXY, \
             HTTPS_PROXY and NO_PROXY, or fetch from a mirror with --rewrite FROM=TO"
        );
    }
    if nd
        .shortfalls
        .iter()
        .any(|s| matches!(s, Shortfall::TooManyMissing { .. }))
    {
        eprintln!(
            "hint: a rerun fetches only what is missing; --max-missing sets how many missing \
             images are accepted"
        );
    }
    match &nd.report {
        Some(Ok(path)) => eprintln!("report of this {}: {}", nd.command, path.display()),
        Some(Err(e)) => eprintln!(
            "the report of this {} could not be written: {e}",
            nd.command
        ),
        None => {}
    }
}

/// One line per host and cause of failure, with a count and an example; `note` follows
/// the count.
fn print_failure_groups(groups: &[FailureGroup], failed: usize, note: &str) {
    if failed == 0 || groups.is_empty() {
        return;
    }
    eprintln!("{failed} image(s) could not be fetched{note}:");
    for g in groups.iter().take(MAX_GROUP_LINES) {
        eprintln!("  {g}");
    }
    if groups.len() > MAX_GROUP_LINES {
        let rest: usize = groups[MAX_GROUP_LINES..].iter().map(|g| g.images).sum();
        eprintln!(
            "  ... {rest} more in {} other group(s), see the report",
            groups.len() - MAX_GROUP_LINES
        );
    }
}

/// Turn SIGINT and SIGTERM into a request to stop: the run cleans up and returns
/// `Error::Interrupted`. A second signal ends the process at once (a later run removes
/// what it leaves).
fn watch_signals(stop: Arc<AtomicBool>, signal: Arc<AtomicU8>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before the run starts, not in the watching thread.
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::Builder::new()
        .name("kaokore-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    #[cfg(unix)]
                    let (number, name) = tokio::select! {
                        _ = int.recv() => (2u8, "SIGINT"),
                        _ = term.recv() => (15u8, "SIGTERM"),
                    };
                    #[cfg(not(unix))]
                    let (number, name) = match tokio::signal::ctrl_c().await {
                        Ok(()) => (2u8, "Ctrl-C"),
                        Err(_) => return,
                    };
                    if stop.swap(true, Ordering::SeqCst) {
                        std::process::exit(128 + i32::from(number));
                    }
                    signal.store(number, Ordering::SeqCst);
                    eprintln!("{name}: stopping cleanly (send it again to quit at once)");
                }
            })
        })?;
    Ok(())
}

fn run(cli: Cli, stop: &Arc<AtomicBool>) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Build {
            dataset,
            output,
            network,
            run,
        } => {
            let cfg = config(&dataset, Some(&output), Some(&network), &run, stop)?;
            let report = pipeline::build(&cfg)?;
            summarize(&report, &cfg);
        }
        Command::Fetch {
            dataset,
            network,
            run,
        } => {
            let cfg = config(&dataset, None, Some(&network), &run, stop)?;
            let summary = pipeline::fetch(&cfg)?;
            let groups = group_failures(&summary.failures);
            print_failure_groups(&groups, summary.failures.len(), "");
            if !run.quiet {
                eprintln!(
                    "fetched {} image(s), {} already cached, {} failed; cache: {}",
                    summary.downloaded,
                    summary.from_cache,
                    summary.failures.len(),
                    cfg.cache.display()
                );
            }
        }
        Command::Pack {
            dataset,
            output,
            run,
        } => {
            let cfg = config(&dataset, Some(&output), None, &run, stop)?;
            let report = pipeline::pack(&cfg)?;
            summarize(&report, &cfg);
        }
        Command::Verify { dir, quiet, json } => {
            let report = pipeline::verify(&dir)?;
            let code = if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            if json {
                return Ok(print_json(&VerifyJson::of(&dir, &report))
                    .err()
                    .unwrap_or(code));
            }
            for problem in &report.problems {
                eprintln!("{}: {problem}", dir.display());
            }
            for note in report.notes() {
                eprintln!("{}: {note}", dir.display());
            }
            if !report.is_ok() {
                eprintln!(
                    "verify: {} problem(s) in {}",
                    report.problems.len(),
                    dir.display()
                );
                return Ok(code);
            }
            if !quiet {
                let rows: Vec<String> = report
                    .rows
                    .iter()
                    .map(|(split, n)| format!("{split} {n}"))
                    .collect();
                eprintln!(
                    "verify: ok: {} checksums, rows {}, {} pixel rows compared",
                    report.checksummed,
                    rows.join(", "),
                    report.pixel_rows_compared
                );
            }
        }
        Command::Info { dataset, json } => {
            let data = pipeline::load_dataset(dataset.version, dataset.metadata.as_deref())?;
            let cache = dataset
                .cache
                .clone()
                .unwrap_or_else(kaokore::default_cache_dir);
            let info = pipeline::info(&data, &cache)?;
            let written = if json {
                print_json(&InfoJson::of(&info))
            } else {
                print_stdout(info.to_text().as_bytes())
            };
            if let Err(code) = written {
                return Ok(code);
            }
        }
        Command::Completions { shell } => {
            if let Err(code) = print_stdout(&cli::completions(shell)) {
                return Ok(code);
            }
        }
        Command::Man => {
            if let Err(code) = print_stdout(&cli::man_page()) {
                return Ok(code);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `bytes` to stdout; `Err` holds the exit status when it cannot be written. A
/// reader that stopped early (`kaokore man | head`) is not a failure.
fn print_stdout(bytes: &[u8]) -> Result<(), ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// One JSON document, and a newline, on stdout.
fn print_json(doc: &impl Serialize) -> Result<(), ExitCode> {
    let mut text = serde_json::to_vec_pretty(doc).expect("the JSON shapes serialize");
    text.push(b'\n');
    print_stdout(&text)
}

/// The version of the shapes below, the `schema` key of each document. Keys may be added
/// within a version; a key removed, renamed or changed in meaning is a new version.
const JSON_SCHEMA: u32 = 1;

/// `kaokore info --json`. Each key is named here, not derived from the library's types,
/// so that a change inside the library cannot change the documented shape unnoticed.
#[derive(Serialize)]
struct InfoJson<'a> {
    schema: u32,
    version: &'a str,
    source: &'a str,
    lines: usize,
    urls: usize,
    blank_lines: usize,
    labelled: usize,
    labelled_without_url: usize,
    unlabelled_urls: usize,
    splits: Splits<'a>,
    hosts: &'a BTreeMap<String, usize>,
    providers: &'a BTreeMap<String, usize>,
    size_requests: &'a BTreeMap<String, usize>,
    warnings: &'a BTreeMap<String, usize>,
    /// `null` when the cache directory does not exist.
    cache: Option<CacheJson<'a>>,
}

#[derive(Serialize)]
struct SplitJson<'a> {
    images: usize,
    with_url: usize,
    gender: &'a BTreeMap<String, usize>,
    status: &'a BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct CacheJson<'a> {
    dir: &'a str,
    urls_cached: usize,
    packable: usize,
    packable_cached: usize,
}

/// The splits of `info` as an object in split order (train, dev, test), not sorted.
struct Splits<'a>(&'a BTreeMap<String, SplitInfo>);

impl Serialize for Splits<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(Split::ALL.into_iter().filter_map(|split| {
            let info = self.0.get(split.name())?;
            Some((
                split.name(),
                SplitJson {
                    images: info.images,
                    with_url: info.with_url,
                    gender: &info.gender,
                    status: &info.status,
                },
            ))
        }))
    }
}

impl<'a> InfoJson<'a> {
    fn of(info: &'a DatasetInfo) -> InfoJson<'a> {
        InfoJson {
            schema: JSON_SCHEMA,
            version: &info.version,
            source: &info.source,
            lines: info.lines,
            urls: info.urls,
            blank_lines: info.blank_lines,
            labelled: info.labelled,
            labelled_without_url: info.labelled_without_url,
            unlabelled_urls: info.unlabelled_urls,
            splits: Splits(&info.splits),
            hosts: &info.hosts,
            providers: &info.providers,
            size_requests: &info.size_requests,
            warnings: &info.warnings,
            cache: info.cache.as_ref().map(|c| CacheJson {
                dir: &c.dir,
                urls_cached: c.urls_cached,
                packable: c.packable,
                packable_cached: c.packable_cached,
            }),
        }
    }
}

/// `kaokore verify --json`, from the public figures of the verify report.
#[derive(Serialize)]
struct VerifyJson<'a> {
    schema: u32,
    dir: String,
    ok: bool,
    checks: ChecksJson<'a>,
    problems: Vec<ProblemJson<'a>>,
    extra_files: &'a [String],
    extra_files_count: usize,
}

/// What was checked, and how much of it.
#[derive(Serialize)]
struct ChecksJson<'a> {
    /// Files whose SHA-256 matched their SHA256SUMS line.
    checksums: usize,
    /// Rows checked to agree across the formats, per split.
    rows: Rows<'a>,
    /// Of them, rows whose pixels were compared.
    pixel_rows: u64,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    /// `null` when the problem is with the directory as a whole.
    file: Option<&'a str>,
    /// `null` when the problem is with the file as a whole.
    row: Option<u64>,
    reason: &'a str,
}

/// Rows per split as an object in split order.
struct Rows<'a>(&'a [(Split, u64)]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(split, n)| (split.name(), n)))
    }
}

impl<'a> VerifyJson<'a> {
    fn of(dir: &Path, report: &'a VerifyReport) -> VerifyJson<'a> {
        VerifyJson {
            schema: JSON_SCHEMA,
            dir: dir.display().to_string(),
            ok: report.is_ok(),
            checks: ChecksJson {
                checksums: report.checksummed,
                rows: Rows(&report.rows),
                pixel_rows: report.pixel_rows_compared,
            },
            problems: report
                .problems
                .iter()
                .map(|p| ProblemJson {
                    file: Some(p.file.as_str()).filter(|f| !f.is_empty()),
                    row: p.row,
                    reason: &p.message,
                })
                .collect(),
            extra_files: &report.extra_files,
            extra_files_count: report.extra_files_count,
        }
    }
}

/// The images left out, by host and cause (even with --quiet: they are warnings), and
/// one closing line: what was packed and where.
fn summarize(report: &kaokore::report::BuildReport, cfg: &BuildConfig) {
    let groups = group_failures(&report.failures);
    // A build of several sizes has a report per size; they list the same failures.
    let sizes = cfg.pack.all_sizes();
    let report_dir = if sizes.len() > 1 {
        cfg.out.join(kaokore::layout::size_dir_name(sizes[0]))
    } else {
        cfg.out.clone()
    };
    let left_out = format!(
        " and are left out (see {})",
        report_dir.join("report.json").display()
    );
    print_failure_groups(&groups, report.failures.len(), &left_out);
    if !cfg.progress {
        return;
    }
    let c = &report.counts;
    let per_split: Vec<String> = c.packed.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let into = if sizes.len() > 1 {
        let dirs: Vec<String> = sizes
            .iter()
            .map(|&s| kaokore::layout::size_dir_name(s))
            .collect();
        format!("{} ({})", cfg.out.display(), dirs.join(", "))
    } else {
        cfg.out.display().to_string()
    };
    eprintln!(
        "packed {} image(s) ({}) into {into}; {} not packed (see report.json)",
        c.packed_total,
        per_split.join(", "),
        report.not_packed.len()
    );
}

/// Turn the parsed arguments into the library's configuration.
fn config(
    dataset: &DatasetArgs,
    output: Option<&OutputArgs>,
    network: Option<&NetworkArgs>,
    run: &RunArgs,
    stop: &Arc<AtomicBool>,
) -> Result<BuildConfig, Error> {
    let mut fetch = FetchOptions::default();
    if let Some(n) = network {
        // At most a day: a larger value is a mistake, and one beyond what a Duration holds
        // would panic.
        if !(n.timeout.is_finite() && n.timeout > 0.0 && n.timeout <= MAX_TIMEOUT_SECS) {
            return Err(Error::Usage(format!(
                "--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS} \
                 (a day), got {}",
                n.timeout
            )));
        }
        fetch.rewrites = n.rewrite.clone();
        fetch.per_host = n.per_host as usize;
        fetch.concurrency = n.concurrency as usize;
        fetch.retries = n.retries;
        fetch.timeout = Duration::from_secs_f64(n.timeout);
    }
    let mut pack = PackOptions::default();
    if let Some(jobs) = run.jobs.jobs {
        pack.jobs = jobs as usize;
    }
    fetch.decode_jobs = pack.jobs;
    pack.refuse_undecodable = run.strict;
    let out = match output {
        Some(o) => {
            pack.size = o.size.first().copied().unwrap_or(pack.size);
            pack.sizes = o.size.clone();
            pack.formats = o.formats.clone();
            for flag in &o.format_options.left_out {
                pack.formats.leave_out(flag);
            }
            pack.format_options = o.format_options.values.iter().copied().collect();
            o.out
                .clone()
                .unwrap_or_else(|| format!("kaokore-{}", dataset.version).into())
        }
        None => Default::default(),
    };
    Ok(BuildConfig {
        version: dataset.version,
        metadata_dir: dataset.metadata.clone(),
        out,
        cache: dataset
            .cache
            .clone()
            .unwrap_or_else(kaokore::default_cache_dir),
        fetch,
        pack,
        strict: run.strict,
        max_missing: run.max_missing,
        progress: !run.quiet,
        verbose: run.verbose,
        stop: stop.clone(),
    })
}
