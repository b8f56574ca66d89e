//! `credns sim`: run scenario files through the model and explain every decision.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use credns_model::{OpReport, Scenario, Verdict};

/// Run scenario files (docs/scenarios.md) through the model of the kernel's rules.
///
/// Each operation is printed with its outcome (allowed, the errno, or unknown with the reason)
/// and the trace of every rule consulted and id translated. Exit status: 0 when every
/// expectation holds, 1 when one does not, 2 when a file cannot be read or parsed.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Scenario files (TOML); `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per operation, one per line (fields documented in docs/scenarios.md).
    #[arg(long)]
    json: bool,
    /// Print only each operation's outcome line, not its trace.
    #[arg(long, conflicts_with = "json")]
    brief: bool,
}

/// Parse every file first, so that a bad file is reported before any output.
fn load(files: &[PathBuf]) -> Result<Vec<Scenario>> {
    files
        .iter()
        .map(|path| {
            let (name, text) = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("reading standard input")?;
                ("<stdin>".to_owned(), text)
            } else {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                (path.display().to_string(), text)
            };
            Scenario::parse(&text, &name).map_err(anyhow::Error::from)
        })
        .collect()
}

/// The JSON line of one operation: the report's fields, the file, and the outcome flattened.
fn json_line(file: &str, r: &OpReport) -> serde_json::Value {
    let mut v = serde_json::json!({
        "file": file,
        "index": r.index,
        "line": r.line,
        "op": r.text,
    });
    let outcome = serde_json::to_value(&r.outcome).unwrap_or_default();
    if let (Some(obj), Some(out)) = (v.as_object_mut(), outcome.as_object()) {
        for (k, val) in out {
            obj.insert(k.clone(), val.clone());
        }
        obj.insert("expect".into(), serde_json::json!(r.expect));
        obj.insert("expect_output".into(), serde_json::json!(r.expect_output));
        obj.insert("matched".into(), serde_json::json!(r.matched));
    }
    v
}

fn verdict_text(r: &OpReport) -> String {
    let mut s = match &r.outcome.result {
        Verdict::Allowed => "allowed".to_owned(),
        Verdict::Denied(e) => format!("denied {e}"),
        Verdict::Unknown(why) => format!("unknown ({why})"),
    };
    if let Some(o) = &r.outcome.output {
        s.push_str(&format!(" [{o}]"));
    }
    s
}

fn expectation_text(r: &OpReport) -> String {
    let mut want = Vec::new();
    if let Some(e) = &r.expect {
        want.push(e.clone());
    }
    if let Some(o) = &r.expect_output {
        want.push(format!("output {o}"));
    }
    match r.matched {
        None => String::new(),
        Some(true) => format!("   expected {}: ok", want.join(", ")),
        Some(false) => format!("   expected {}: MISMATCH", want.join(", ")),
    }
}

pub fn run(args: SimArgs) -> Result<ExitCode> {
    let scenarios = load(&args.files)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut ops, mut mismatches) = (0usize, 0usize);
    for (i, s) in scenarios.iter().enumerate() {
        let reports = s.run();
        if !args.json {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "{} ({} operations)", s.source_name, reports.len())?;
        }
        for r in &reports {
            ops += 1;
            if !r.matches() {
                mismatches += 1;
            }
            if args.json {
                writeln!(out, "{}", json_line(&s.source_name, r))?;
                continue;
            }
            writeln!(
                out,
                "\n#{} line {}: {}\n  => {}{}",
                r.index,
                r.line,
                r.text,
                verdict_text(r),
                expectation_text(r)
            )?;
            if !args.brief {
                for step in &r.outcome.trace {
                    writeln!(out, "  {step}")?;
                }
            }
        }
    }
    if !args.json {
        writeln!(
            out,
            "\n{ops} operations, {} as expected, {mismatches} not",
            ops - mismatches
        )?;
    }
    out.flush()?;
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
