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
            pipeline::build(&cfg)?;
        }
        Command::Fetch {
            dataset,
            network,
            run,
        } => {
            let cfg = config(&dataset, None, Some(&network), &run)?;
            pipeline::fetch(&cfg)?;
        }
        Command::Pack {
            dataset,
            output,
            run,
        } => {
            let cfg = config(&dataset, Some(&output), None, &run)?;
            pipeline::pack(&cfg)?;
        }
        Command::Verify { dir, .. } => {
            pipeline::verify(&dir)?;
        }
        Command::Info { dataset, json } => {
            let data = pipeline::load_dataset(dataset.version, dataset.metadata.as_deref())?;
            let cache = dataset
                .cache
                .clone()
                .unwrap_or_else(kaokore::default_cache_dir);
            let info = pipeline::info(&data, Some(&cache))?;
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
    let out = match output {
        Some(o) => {
            pack.size = o.size;
            pack.formats = o.formats;
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
