//! `credns generate`: the man pages and completions are made from the same clap definitions as
//! `--help`, so what `credns run --help` lists, `man credns-run` lists too.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_credns");

fn output(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "credns {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The long options `--help` lists (`--size`, `--volume`...).
fn long_options(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect()
}

/// A roff page as text: `\-` is a hyphen, font changes dropped.
fn roff_text(page: &str) -> String {
    page.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

#[test]
fn every_command_has_a_man_page_listing_the_options_its_help_lists() {
    let dir = tempfile::tempdir().unwrap();
    output(&["generate", "man", dir.path().to_str().unwrap()]);
    for (cmd, page) in [
        (vec!["run"], "credns-run.1"),
        (vec!["serve"], "credns-serve.1"),
        (vec!["map", "check"], "credns-map-check.1"),
        (vec!["alloc"], "credns-alloc.1"),
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let help = output(&args);
        let options = long_options(&help);
        assert!(options.len() >= 2, "{cmd:?}: no options found in\n{help}");
        let text = roff_text(&std::fs::read_to_string(dir.path().join(page)).unwrap());
        assert!(
            text.contains(&format!(".TH {} 1", page.trim_end_matches(".1"))),
            "{page}"
        );
        for o in &options {
            assert!(text.contains(o.as_str()), "{page} does not mention {o}");
        }
    }
    let run = std::fs::read_to_string(dir.path().join("credns-run.1")).unwrap();
    assert!(
        roff_text(&run).contains("Switch to this root filesystem"),
        "run's text"
    );
    let serve = roff_text(&std::fs::read_to_string(dir.path().join("credns-serve.1")).unwrap());
    assert!(serve.contains("--log-level"), "{serve}");
    // The packaging command itself is hidden, from --help and from the pages.
    assert!(!dir.path().join("credns-generate.1").exists());
    assert!(!output(&["--help"]).contains("generate"));
}

#[test]
fn completions_know_the_commands_and_their_options() {
    let bash = output(&["generate", "completions", "bash"]);
    assert!(
        bash.contains("complete -F _credns"),
        "not a bash completion"
    );
    for word in ["serve", "run", "--log-level", "--rootfs"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    output(&[
        "generate",
        "completions",
        "zsh",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let zsh = std::fs::read_to_string(dir.path().join("_credns")).unwrap();
    assert!(
        zsh.starts_with("#compdef credns"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    let o = Command::new(BIN)
        .args(["generate", "completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));
}
