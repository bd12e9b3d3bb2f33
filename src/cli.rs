//! The command line: every subcommand and option, documented where it is declared, and
//! the man page and shell completions generated from these same definitions, so that they
//! cannot drift from `--help`. `main.rs` turns a parsed `Cli` into library calls and prints
//! what they return; nothing here touches a dataset, the network or a file.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_mangen::Man;
use clap_mangen::roff::Roff;
use kaokore::config::MaxMissing;
use kaokore::{DatasetVersion, Formats, Rewrite};

#[derive(Debug, Parser)]
#[command(
    name = "kaokore",
    version,
    about = "Build machine-learning release artifacts from the KaoKore dataset",
    long_about = "Build machine-learning artifacts from the KaoKore dataset: face crops from \
Japanese picture scrolls and picture books, published by CODH (ROIS-DS Center for Open Data \
in the Humanities) as IIIF image URLs with expert labels (gender, social status) and \
train/dev/test splits.\n\n\
The upstream metadata of versions 1.0 to 1.3 is built in. `kaokore build` fetches the images \
politely into a cache, normalizes them to S x S RGB and writes the artifacts --formats asks for: \
idx, npz and Parquet files by default; WebDataset shards, MNIST-style gray files, image files \
and the others `kaokore build --help` lists on request. Each build comes with a dataset card, \
checksums and a build report.\n\n\
KaoKore is licensed CC BY-SA 4.0: \"KaoKore Dataset\" (collected by CODH from multiple \
organizations), doi:10.20676/00000353. Upstream asks that derived datasets including the \
image data are not redistributed: the artifacts are for your own use.",
    after_help = "Start with `kaokore info` to see what a version holds, then `kaokore build`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, normalize and pack a dataset version: the main job.
    ///
    /// Downloads every labelled image that is not cached yet, then writes the artifacts of
    /// --formats into --out. Images that cannot be fetched are reported in report.json and
    /// left out, up to --max-missing (or none with --strict). A build that cannot deliver
    /// (nothing fetched, a host unreachable, too many missing) exits 1 and leaves --out as
    /// it was; its report goes to CACHE/failed-build-report.json. Ctrl-C (SIGINT) and
    /// SIGTERM stop it cleanly (exit 130 / 143); the next run resumes.
    Build {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Only fill the image cache (every URL of the version, labelled or not).
    Fetch {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Normalize and pack from the cache, without any network access.
    ///
    /// Images missing from the cache are reported and left out (or fail with --strict).
    Pack {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Re-check a built output directory: checksums, and that every format's files agree
    /// row by row.
    ///
    /// Exits 0 when the directory is good, 1 on any problem (a disagreement, a missing or
    /// unlisted artifact), 2 when DIR is not a directory.
    Verify {
        /// The output directory of a build.
        dir: PathBuf,
        /// Print nothing but errors.
        #[arg(long)]
        quiet: bool,
        /// Print what was checked and every problem found as one JSON document on stdout,
        /// instead of lines on stderr (its shape is in README.md); the exit status is the
        /// same.
        #[arg(long)]
        json: bool,
    },
    /// Show what a dataset version holds: counts per split and label, hosts, size
    /// requests, metadata warnings and how much of it the cache already has.
    Info {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Print the figures as one JSON document instead of text (its shape is in
        /// README.md).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script for kaokore to stdout.
    ///
    /// For example `kaokore completions bash > ~/.local/share/bash-completion/completions/kaokore`
    /// or `kaokore completions zsh > ~/.zfunc/_kaokore`.
    Completions {
        /// The shell to complete in.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print kaokore's man page (roff) to stdout: every command and option.
    ///
    /// For example `kaokore man > ~/.local/share/man/man1/kaokore.1`, or read it at once
    /// with `kaokore man | man -l -`.
    Man,
}

/// Which dataset, and where its images are cached.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// Dataset version: 1.0, 1.1, 1.2 or 1.3.
    #[arg(long = "dataset-version", value_name = "V", default_value = "1.3")]
    pub version: DatasetVersion,

    /// Use this upstream-layout directory (urls.txt, labels.csv, original_tags.txt,
    /// labels.metadata.en.txt, labels.metadata.ja.txt) instead of the built-in files.
    #[arg(long, value_name = "DIR")]
    pub metadata: Option<PathBuf>,

    /// Image cache, shared between versions and runs
    /// [default: $XDG_CACHE_HOME/kaokore, else ~/.cache/kaokore].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// What to write, and where.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output directory [default: kaokore-V, e.g. kaokore-1.3].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Normalized edge length: every image becomes S x S RGB. Several, comma-separated
    /// (64,128,256), build each size completely in DIR/size-S/ from one fetch and decode.
    #[arg(long, value_name = "S[,S...]", value_delimiter = ',', default_value = "256", value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub size: Vec<u32>,

    // Help and default come from the format registry.
    #[arg(long, value_name = "LIST", default_value_t = Formats::default(), help = kaokore::pack::format_help())]
    pub formats: Formats,

    #[command(flatten)]
    pub format_options: FormatArgs,
}

/// The options the formats declare (`--shard-size`, `--row-group-rows`, ...), each flag
/// once however many formats read it, and the flags that leave out a format every build
/// makes (`--no-preview`): both collected from the format registry.
#[derive(Debug, Clone, Default)]
pub struct FormatArgs {
    /// (flag, value) of every format option.
    pub values: Vec<(&'static str, u64)>,
    /// The opt-out flags given.
    pub left_out: Vec<&'static str>,
}

impl clap::FromArgMatches for FormatArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let values = kaokore::pack::format::options()
            .into_iter()
            .filter_map(|o| matches.get_one::<u64>(o.flag).map(|&v| (o.flag, v)))
            .collect();
        let left_out = kaokore::pack::format::opt_outs()
            .into_iter()
            .map(|(flag, _)| flag)
            .filter(|flag| matches.get_flag(flag))
            .collect();
        Ok(FormatArgs { values, left_out })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = FormatArgs::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for FormatArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = kaokore::pack::format::opt_outs()
            .into_iter()
            .fold(cmd, |cmd, (flag, help)| {
                cmd.arg(
                    clap::Arg::new(flag)
                        .long(flag)
                        .help(help)
                        .action(clap::ArgAction::SetTrue),
                )
            });
        kaokore::pack::format::options()
            .into_iter()
            .fold(cmd, |cmd, o| {
                cmd.arg(
                    clap::Arg::new(o.flag)
                        .long(o.flag)
                        .value_name(o.value_name)
                        .help(kaokore::pack::format::option_help(o))
                        .default_value(o.default)
                        .value_parser(o.parse),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        FormatArgs::augment_args(cmd)
    }
}

/// How politely and patiently to talk to the IIIF servers.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Fetch URLs starting with FROM from TO instead (mirrors, proxies, tests);
    /// repeatable. Artifacts still record the original URL.
    #[arg(long, value_name = "FROM=TO")]
    pub rewrite: Vec<Rewrite>,

    /// Most requests in flight to one host.
    #[arg(long = "per-host", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub per_host: u32,

    /// Most requests in flight overall.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Retries of a transient failure (timeouts, connection errors, 408, 429, 5xx,
    /// truncated or undecodable bodies), with exponential backoff and jitter, honouring
    /// Retry-After.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Limit in seconds for one whole request, body included (more than 0, at most a day).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
}

/// How the run behaves.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub jobs: JobsArg,

    /// Fail (exit 1, --out left as it was) if any image could not be fetched or decoded.
    #[arg(long)]
    pub strict: bool,

    /// Fail (exit 1, --out left as it was) when more images than this could not be
    /// fetched: a count (25) or a share of the images needed (2%). The default lets an
    /// ordinary ~1% of images gone upstream through and stops a systematic loss.
    #[arg(long = "max-missing", value_name = "N|P%", default_value = "2%")]
    pub max_missing: MaxMissing,

    /// No progress display.
    #[arg(long)]
    pub quiet: bool,

    /// Also print every image that could not be fetched, as it fails (report.json lists
    /// them in any case).
    #[arg(long, conflicts_with = "quiet")]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct JobsArg {
    /// CPU worker threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
}

/// The completion script of `shell` for every command and option above, the formats' own
/// options included.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kaokore", &mut script);
    script
}

/// The man page (roff) of every command and option above, in one page: kaokore's name,
/// synopsis, description and options, then under COMMANDS each command's synopsis,
/// description and options, then the version. clap_mangen alone writes a page per
/// command; it renders each section here, and the page is put together from them.
pub fn man_page() -> Vec<u8> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let top = Man::new(cmd.clone());
    let mut page = rendered(|w| top.render_title(w));
    page += &section(|w| top.render_name_section(w));
    page += &section(|w| top.render_synopsis_section(w));
    page += &section(|w| top.render_description_section(w));
    page += &section(|w| top.render_options_section(w));
    page += &Roff::new().control("SH", ["COMMANDS"]).to_roff();
    for sub in cmd.get_subcommands() {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        page += &Roff::new().control("SS", [name]).to_roff();
        // Headings of its own would end the COMMANDS section: its options go under its name.
        let man = Man::new(sub.clone().mut_args(|a| a.help_heading(None)));
        page += &without_heading(&section(|w| man.render_synopsis_section(w)));
        page += &Roff::new().control("PP", []).to_roff();
        page += &without_heading(&section(|w| man.render_description_section(w)));
        page += &without_heading(&section(|w| man.render_options_section(w)));
    }
    page += &section(|w| top.render_version_section(w));
    page.into_bytes()
}

/// What a clap_mangen renderer writes (into memory, which cannot fail).
fn rendered(render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> String {
    let mut roff = Vec::new();
    render(&mut roff).expect("writing to memory");
    String::from_utf8(roff).expect("roff of UTF-8 text is UTF-8")
}

/// A rendered section without the preamble every rendering starts with: the page has it
/// once, at the top.
fn section(render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> String {
    let roff = rendered(render);
    let preamble = Roff::new().render();
    roff.strip_prefix(&preamble).unwrap_or(&roff).to_string()
}

/// A section's lines without its `.SH` heading (text lines never start with a dot: roff
/// escapes them).
fn without_heading(roff: &str) -> String {
    roff.lines()
        .filter(|line| !line.starts_with(".SH"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command and every long option, walked from the definitions (the formats'
    /// options from the registry included), is in the man page and the completions.
    #[test]
    fn man_page_and_completions_name_every_option() {
        let man = String::from_utf8(man_page()).unwrap();
        // roff escapes the dashes of an option.
        let man = man.replace("\\-", "-");
        let scripts: Vec<(clap_complete::Shell, String)> = [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
            clap_complete::Shell::Elvish,
        ]
        .into_iter()
        .map(|shell| (shell, String::from_utf8(completions(shell)).unwrap()))
        .collect();
        let cmd = Cli::command();
        let mut longs = 0;
        for sub in cmd.get_subcommands() {
            assert!(
                man.contains(&format!(".SS \"kaokore {}\"", sub.get_name())),
                "man: no section for {}",
                sub.get_name()
            );
            for long in sub.get_arguments().filter_map(|a| a.get_long()) {
                longs += 1;
                assert!(man.contains(&format!("--{long}")), "man: no --{long}");
                for (shell, script) in &scripts {
                    // fish names an option without its dashes (`-l shard-size`).
                    let written = match shell {
                        clap_complete::Shell::Fish => format!("-l {long}"),
                        _ => format!("--{long}"),
                    };
                    assert!(script.contains(&written), "{shell}: no {written}");
                }
            }
            for (shell, script) in &scripts {
                assert!(
                    script.contains(sub.get_name()),
                    "{shell}: no {}",
                    sub.get_name()
                );
            }
        }
        assert!(longs > 20, "only {longs} long options");
        for option in kaokore::pack::format::options() {
            assert!(
                man.contains(&format!("--{}", option.flag)),
                "man: no --{}",
                option.flag
            );
        }
        assert_eq!(man.matches(".TH ").count(), 1);
        assert_eq!(
            man.matches(&Roff::new().render()).count(),
            1,
            "one preamble"
        );
    }
}
