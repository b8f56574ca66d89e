//! `credns`: identity for Linux containers. A thin binary over the credns libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod map_cmd;
mod registry_cmd;

/// Identity for Linux containers: ID maps, user namespaces, idmapped mounts and keyrings.
#[derive(Debug, Parser)]
#[command(name = "credns", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, translate and show user-namespace ID maps.
    #[command(subcommand)]
    Map(map_cmd::MapCommand),
    #[command(flatten)]
    Registry(registry_cmd::RegistryCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Map(cmd) => map_cmd::run(cmd),
        Command::Registry(cmd) => registry_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("credns: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
