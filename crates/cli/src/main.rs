//! `credns`: identity for Linux containers. A thin binary over the credns libraries.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The installed build's allocator (musl's own is slower for the daemon; BENCHMARKS.md).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

mod audit_cmd;
mod explain_cmd;
mod generate_cmd;
mod key_cmd;
mod key_upcall;
mod map_cmd;
mod mount_cmd;
mod oci_cmd;
mod output;
mod registry_cmd;
mod run_cmd;
mod serve_cmd;
mod sim_cmd;
mod subid_cmd;

/// Identity for Linux containers: ID maps, user namespaces, idmapped mounts and keyrings.
#[derive(Debug, Parser)]
#[command(
    name = "credns",
    version,
    about,
    propagate_version = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, translate and show user-namespace ID maps.
    #[command(subcommand)]
    Map(map_cmd::MapCommand),
    /// Run scenario files through the model of the kernel's rules, explaining each decision.
    Sim(sim_cmd::SimArgs),
    Mount(mount_cmd::MountArgs),
    #[command(about = run_cmd::ABOUT)]
    Run(run_cmd::RunArgs),
    /// Fill an OCI bundle's uidMappings/gidMappings from an allocation named after the bundle.
    Oci(oci_cmd::OciArgs),
    Audit(audit_cmd::AuditArgs),
    Explain(explain_cmd::ExplainArgs),
    #[command(flatten)]
    Registry(registry_cmd::RegistryCommand),
    /// Write man pages or shell completions made from these very definitions (packaging).
    #[command(subcommand, hide = true)]
    Generate(generate_cmd::GenerateCommand),
    /// Delegate subordinate ids to a user (what /etc/subuid and /etc/subgid would list),
    /// answered to newuidmap, getsubids and podman through libsubid (root only).
    Delegate(subid_cmd::DelegateArgs),
    /// Make other tools see the registry.
    #[command(subcommand)]
    Setup(subid_cmd::SetupCommand),
    /// Container keyrings: keys for a container, grants of your own keys, what is in them.
    #[command(subcommand)]
    Key(key_cmd::KeyCommand),
    /// Print the help of credns or of one of its commands (`credns help run`).
    Help {
        /// The command (and subcommand) whose help to print.
        command: Vec<String>,
    },
}

/// `credns help [COMMAND...]`: the same text as `credns [COMMAND...] --help`.
fn help(path: &[String]) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Building names each subcommand's usage after its path (`credns run`).
    cmd.build();
    for name in path {
        let Some(sub) = cmd.find_subcommand(name).cloned() else {
            anyhow::bail!("help: no command {name:?} (see `credns --help`)");
        };
        cmd = sub;
    }
    cmd.print_long_help()?;
    Ok(ExitCode::SUCCESS)
}

/// `credns run …` and `credns key upcall …` parsed against their own arguments alone:
/// building the whole command tree (every subcommand's arguments) is most of the parser's
/// cost, and these are the paths whose start-up is measured (`run` against the kernel's floor,
/// `key upcall` against plain request-key). Everything else, and help, goes through the whole
/// tree, which declares both with the same arguments and text.
fn parse() -> Command {
    use clap::{Args, FromArgMatches};
    let arg = |i: usize| std::env::args_os().nth(i);
    if arg(1).is_some_and(|a| a == "run") {
        let cmd = run_cmd::RunArgs::augment_args(
            clap::Command::new("run")
                .bin_name("credns run")
                .version(env!("CARGO_PKG_VERSION"))
                .about(run_cmd::ABOUT),
        );
        let matches = cmd.get_matches_from(std::env::args_os().skip(1));
        return match run_cmd::RunArgs::from_arg_matches(&matches) {
            Ok(a) => Command::Run(a),
            Err(e) => e.exit(),
        };
    }
    if arg(1).is_some_and(|a| a == "key") && arg(2).is_some_and(|a| a == "upcall") {
        let cmd = key_upcall::UpcallArgs::augment_args(
            clap::Command::new("upcall").bin_name("credns key upcall"),
        );
        let matches = cmd.get_matches_from(std::env::args_os().skip(2));
        return match key_upcall::UpcallArgs::from_arg_matches(&matches) {
            Ok(a) => Command::Key(key_cmd::KeyCommand::Upcall(a)),
            Err(e) => e.exit(),
        };
    }
    Cli::parse().command
}

fn main() -> ExitCode {
    let command = parse();
    // The daemon sets its own level; a command shows the library's warnings (a host file line
    // taken leniently) on stderr.
    if !matches!(
        command,
        Command::Registry(registry_cmd::RegistryCommand::Serve(_))
    ) {
        credns_service::logging::init(credns_service::logging::LevelFilter::WARN);
    }
    let result = match command {
        Command::Map(cmd) => map_cmd::run(cmd),
        Command::Sim(args) => sim_cmd::run(args),
        Command::Mount(a) => mount_cmd::run(a),
        Command::Run(args) => run_cmd::run(args),
        Command::Oci(args) => oci_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Explain(args) => explain_cmd::run(args),
        Command::Registry(cmd) => registry_cmd::run(cmd),
        Command::Generate(g) => {
            use clap::CommandFactory;
            generate_cmd::run(g, Cli::command())
        }
        Command::Delegate(a) => subid_cmd::delegate(a),
        Command::Setup(cmd) => subid_cmd::setup(cmd),
        Command::Key(cmd) => key_cmd::run(cmd),
        Command::Help { command } => help(&command),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`credns sim … | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<run_cmd::ChildFailed>() => {
            let f = e.downcast_ref::<run_cmd::ChildFailed>().expect("checked");
            eprintln!("credns run: {f}");
            ExitCode::from(f.exit_code())
        }
        Err(e) if e.is::<run_cmd::SetupFailed>() => {
            eprintln!("credns run: error: {}", output::error_text(&e));
            ExitCode::from(125)
        }
        Err(e) => {
            eprintln!("credns: error: {}", output::error_text(&e));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
