//! `credns generate` (hidden; for packaging): man pages and shell completions made from the
//! clap definitions themselves, so they say what `--help` says. `credns generate man DIR`
//! writes `credns.1` and one page per command (`credns-run.1`, `credns-map-check.1`, ...);
//! `credns generate completions SHELL` prints the completion script.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use clap_complete::Shell;

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write credns.1 and a page for every command (credns-run.1, ...) into DIR.
    Man {
        /// Where the pages go (created if missing).
        dir: PathBuf,
    },
    /// Print the completion script of SHELL (or write it into --dir, named as SHELL expects).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
        /// Write the file here instead of printing it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub fn run(g: GenerateCommand, mut cli: clap::Command) -> Result<ExitCode> {
    match g {
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        GenerateCommand::Completions { shell, dir: None } => {
            // Into memory first: clap_complete panics on a failed write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "credns", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
        }
        GenerateCommand::Completions {
            shell,
            dir: Some(dir),
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_complete::generate_to(shell, &mut cli, "credns", &dir)
                .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
