//! The `kaokore` binary: parse the command line, call the library, print errors and set
//! the exit status (0 success, 1 runtime failure, 2 bad usage or input).

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cli::{Cli, Command, DatasetArgs, NetworkArgs, OutputArgs, RunArgs};
use kaokore::{BuildConfig, Error, FetchOptions, PackOptions, pipeline};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Build {
            dataset,
            output,
            network,
            run,
        } => {
            let cfg = config(&dataset, Some(&output), Some(&network), &run)?;
            let report = pipeline::build(&cfg)?;
            summarize(&report, &cfg);
        }
        Command::Fetch {
            dataset,
            network,
            run,
        } => {
            let cfg = config(&dataset, None, Some(&network), &run)?;
            let summary = pipeline::fetch(&cfg)?;
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
            let cfg = config(&dataset, Some(&output), None, &run)?;
            let report = pipeline::pack(&cfg)?;
            summarize(&report, &cfg);
        }
        Command::Verify { dir, quiet } => {
            let report = pipeline::verify(&dir)?;
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
                return Ok(ExitCode::from(1));
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
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).expect("info serializes")
                );
            } else {
                print!("{}", info.to_text());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One closing line on stderr: what was packed and where.
fn summarize(report: &kaokore::report::BuildReport, cfg: &BuildConfig) {
    if !cfg.progress {
        return;
    }
    let c = &report.counts;
    let per_split: Vec<String> = c.packed.iter().map(|(s, n)| format!("{s} {n}")).collect();
    eprintln!(
        "packed {} image(s) ({}) into {}; {} not packed (see report.json)",
        c.packed_total,
        per_split.join(", "),
        cfg.out.display(),
        report.not_packed.len()
    );
}

/// Turn the parsed arguments into the library's configuration.
fn config(
    dataset: &DatasetArgs,
    output: Option<&OutputArgs>,
    network: Option<&NetworkArgs>,
    run: &RunArgs,
) -> Result<BuildConfig, Error> {
    let mut fetch = FetchOptions::default();
    if let Some(n) = network {
        if !(n.timeout.is_finite() && n.timeout > 0.0) {
            return Err(Error::Usage(format!(
                "--timeout must be a positive number of seconds, got {}",
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
    let out = match output {
        Some(o) => {
            pack.size = o.size;
            pack.formats = o.formats.clone();
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
        progress: !run.quiet,
    })
}
