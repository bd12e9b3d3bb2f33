//! What the command line says about itself: the shell completions and the man page name
//! every command and every long option that `--help` shows (the formats' own options
//! included).

use std::collections::BTreeSet;
use std::process::Output;

use crate::support::{kaokore, stderr};

fn run(args: &[&str]) -> Output {
    kaokore().args(args).output().expect("run kaokore")
}

/// stdout of a run that must succeed.
fn stdout_of(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("UTF-8 on stdout")
}

/// The lines of a `--help` section (`Commands:`, `Options:`) up to the next section.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// The commands `kaokore --help` lists (clap's own `help` left out).
fn commands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    section(&help, "Commands:")
        .into_iter()
        // A command's line is indented by two; its wrapped description, further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

/// The long options `kaokore CMD --help` lists, `--help` itself included.
fn long_options(cmd: &str) -> Vec<String> {
    let help = stdout_of(&[cmd, "--help"]);
    section(&help, "Options:")
        .into_iter()
        // An option's line is indented by at most six (`  -h, --help`, `      --out <DIR>`);
        // its help text, by ten.
        .filter(|l| {
            let text = l.trim_start();
            text.starts_with('-') && l.len() - text.len() <= 6
        })
        .filter_map(|l| {
            l.split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(String::from)
        })
        .collect()
}

#[test]
fn the_help_lists_every_command_and_the_formats_options() {
    assert_eq!(
        commands(),
        [
            "build",
            "fetch",
            "pack",
            "verify",
            "info",
            "completions",
            "man"
        ]
    );
    let build = long_options("build");
    for option in [
        "--dataset-version",
        "--formats",
        "--shard-size",
        "--row-group-rows",
        "--strict",
        "--max-missing",
        "--help",
    ] {
        assert!(build.iter().any(|o| o == option), "{option}: {build:?}");
    }
    assert_eq!(long_options("verify"), ["--quiet", "--help"]);
}

#[test]
fn bash_completions_offer_each_command_its_options() {
    let script = stdout_of(&["completions", "bash"]);
    // The words offered after `kaokore`, and after `kaokore CMD`.
    let offered = |state: &str| -> BTreeSet<String> {
        let mut lines = script.lines().map(str::trim);
        lines.find(|l| *l == format!("{state})"));
        let opts = lines
            .find_map(|l| l.strip_prefix("opts=\""))
            .unwrap_or_else(|| panic!("no completions for {state}"));
        opts.trim_end_matches('"')
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let top = offered("kaokore");
    for cmd in commands() {
        assert!(top.contains(&cmd), "{cmd} not offered: {top:?}");
        let words = offered(&format!("kaokore__subcmd__{cmd}"));
        for option in long_options(&cmd) {
            assert!(
                words.contains(&option),
                "kaokore {cmd}: {option} not offered"
            );
        }
    }
}

#[test]
fn every_shell_gets_completions_for_every_command_and_option() {
    let all: BTreeSet<String> = commands().iter().flat_map(|c| long_options(c)).collect();
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for cmd in commands() {
            assert!(script.contains(&cmd), "{shell}: no {cmd}");
        }
        for option in &all {
            // fish names a long option without its dashes (`-l shard-size`).
            let written = match shell {
                "fish" => format!("-l {}", &option[2..]),
                _ => option.clone(),
            };
            assert!(script.contains(&written), "{shell}: no {written}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let o = run(&["completions", "nosuchshell"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("bash, elvish, fish, powershell, zsh"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_man_page_documents_every_command_and_option() {
    // roff writes a dash as `\-`.
    let man = stdout_of(&["man"]).replace("\\-", "-");
    assert!(man.contains(".TH kaokore 1"), "{man}");
    assert_eq!(man.matches(".TH ").count(), 1, "one page");
    for cmd in commands() {
        // The command's part: from its heading to the next one.
        let heading = format!(".SS \"kaokore {cmd}\"\n");
        let start = man
            .find(&heading)
            .unwrap_or_else(|| panic!("no part for {cmd}"));
        let part = &man[start + heading.len()..];
        let part = &part[..part.find("\n.S").unwrap_or(part.len())];
        for option in long_options(&cmd) {
            assert!(
                part.contains(&option),
                "kaokore {cmd}: {option} not documented"
            );
        }
    }
    // The help's wording, not a summary of it.
    assert!(
        man.contains("if any image could not be fetched or decoded"),
        "{man}"
    );
}
