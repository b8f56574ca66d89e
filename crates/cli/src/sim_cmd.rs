//! `credns sim`: run scenario files through the model and explain every decision.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use credns_model::{Difference, OpReport, Outcome, Scenario, Semantics, Verdict};

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
    /// Print exactly one line per operation (FILE:LINE, the operation, its outcome and the
    /// expectation), no trace; the totals go to stderr.
    #[arg(long, conflicts_with = "json")]
    brief: bool,
    /// Instead of running the operations, ask of every process of the scenario (as
    /// declared, before any operation) whether `access(PATH, --access)` would succeed.
    #[arg(long, value_name = "PATH", conflicts_with = "brief")]
    who_can: Option<String>,
    /// Run every operation under each of these semantics (comma-separated; each is
    /// `mainline`, a proposal, or proposals joined by `+`, e.g.
    /// `mainline,host_admin+inode_userns`; see docs/semantics.md) and print the operations
    /// whose outcome differs, with each side's trace from the first rule where they part.
    #[arg(long, value_name = "SEMANTICS,…", conflicts_with_all = ["brief", "who_can"], value_parser = parse_compare)]
    compare: Option<CompareList>,
    /// The access `--who-can` asks for: any of r, w, x (as access(2)'s R_OK, W_OK, X_OK).
    #[arg(long, value_name = "rwx", default_value = "r", requires = "who_can", value_parser = parse_access)]
    access: u32,
}

/// The semantics `--compare` runs, in order.
#[derive(Clone, Debug)]
struct CompareList(Vec<Semantics>);

/// `mainline,host_admin+inode_userns`: at least two semantics, each known.
fn parse_compare(s: &str) -> Result<CompareList, String> {
    let list = s
        .split(',')
        .map(|p| Semantics::parse(p.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if list.len() < 2 {
        return Err("give at least two semantics to compare, e.g. mainline,host_admin".into());
    }
    Ok(CompareList(list))
}

fn outcome_text(o: &Outcome) -> String {
    let mut s = match &o.result {
        Verdict::Allowed => "allowed".to_owned(),
        Verdict::Denied(e) => format!("denied {e}"),
        Verdict::Unknown(why) => format!("unknown ({why})"),
    };
    if let Some(out) = &o.output {
        s.push_str(&format!(" [{out}]"));
    }
    s
}

/// `--compare`: the operations whose outcome differs, each side from where it parts.
fn compare(args: &SimArgs, sems: &[Semantics], scenarios: &[Scenario]) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let names: Vec<String> = sems.iter().map(|s| s.to_string()).collect();
    for (i, s) in scenarios.iter().enumerate() {
        let diffs = s.compare(sems);
        if args.json {
            for d in &diffs {
                writeln!(out, "{}", compare_json(&s.source_name, d))?;
            }
            continue;
        }
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "{}: {} of {} operations differ between {}",
            s.source_name,
            diffs.len(),
            s.ops.len(),
            names.join(" and ")
        )?;
        for d in &diffs {
            writeln!(out, "\n#{} line {}: {}", d.index, d.line, d.text)?;
            for side in &d.sides {
                writeln!(
                    out,
                    "  {} => {}",
                    side.semantics,
                    outcome_text(&side.outcome)
                )?;
            }
            writeln!(out, "  the traces part at step {}:", d.parted_at)?;
            for side in &d.sides {
                writeln!(out, "  [{}]", side.semantics)?;
                for step in &side.from_parting {
                    writeln!(out, "    {step}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON line of one difference: each side's outcome, its trace from the parting step.
fn compare_json(file: &str, d: &Difference) -> serde_json::Value {
    let sides: Vec<serde_json::Value> = d
        .sides
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s.outcome).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("semantics".into(), s.semantics.clone().into());
                obj.insert(
                    "trace".into(),
                    serde_json::to_value(&s.from_parting).unwrap_or_default(),
                );
            }
            v
        })
        .collect();
    serde_json::json!({
        "file": file,
        "index": d.index,
        "line": d.line,
        "op": d.text,
        "parted_at": d.parted_at,
        "sides": sides,
    })
}

/// `r`, `w`, `x` in any order and combination, as `access(2)`'s mode bits.
fn parse_access(s: &str) -> Result<u32, String> {
    let mut mode = 0;
    for c in s.chars() {
        let bit = match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            _ => return Err(format!("'{c}' is not one of r, w, x")),
        };
        if mode & bit != 0 {
            return Err(format!("'{c}' is given twice"));
        }
        mode |= bit;
    }
    if mode == 0 {
        return Err("give at least one of r, w, x".into());
    }
    Ok(mode)
}

fn access_text(mode: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .filter(|(b, _)| mode & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `--who-can`: every process of every scenario, asked through one resolved query.
fn who_can(args: &SimArgs, path: &str, scenarios: &[Scenario]) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, s) in scenarios.iter().enumerate() {
        let w = &s.world;
        let q = w.access_query(path, args.access, false);
        let mut rows = Vec::new();
        for (task, t) in w.tasks() {
            let c = &t.cred;
            let ns = c.user_ns;
            let result = w.decide_access(task, &q);
            rows.push((
                t,
                w.ns(ns).name.as_str(),
                w.from_kuid_munged(ns, c.uid),
                w.from_kgid_munged(ns, c.gid),
                result,
            ));
        }
        if args.json {
            for (t, ns, uid, gid, result) in &rows {
                let mut v = serde_json::json!({
                    "file": s.source_name,
                    "path": q.path(),
                    "access": access_text(args.access),
                    "process": t.name,
                    "ns": ns,
                    "uid": uid,
                    "gid": gid,
                    "kuid": t.cred.uid.0,
                    "kgid": t.cred.gid.0,
                });
                if let Some(obj) = v.as_object_mut() {
                    match result {
                        Verdict::Allowed => {
                            obj.insert("result".into(), "allowed".into());
                        }
                        Verdict::Denied(e) => {
                            obj.insert("result".into(), "denied".into());
                            obj.insert("errno".into(), e.name().into());
                        }
                        Verdict::Unknown(why) => {
                            obj.insert("result".into(), "unknown".into());
                            obj.insert("reason".into(), why.as_str().into());
                        }
                    }
                }
                writeln!(out, "{v}")?;
            }
            continue;
        }
        if i > 0 {
            writeln!(out)?;
        }
        let allowed = rows.iter().filter(|r| r.4 == Verdict::Allowed).count();
        writeln!(
            out,
            "{}: access(\"{}\", {}) by each process: {allowed} of {} allowed",
            s.source_name,
            q.path(),
            access_text(args.access),
            rows.len()
        )?;
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY);
        table.set_header([
            "process",
            "namespace",
            "uid:gid",
            "kernel uid:gid",
            "answer",
        ]);
        for (t, ns, uid, gid, result) in &rows {
            let answer = match result {
                Verdict::Allowed => "allowed".to_owned(),
                Verdict::Denied(e) => format!("denied {e}"),
                Verdict::Unknown(why) => format!("unknown ({why})"),
            };
            table.add_row([
                t.name.clone(),
                ns.to_string(),
                format!("{uid}:{gid}"),
                format!("{}:{}", t.cred.uid.0, t.cred.gid.0),
                answer,
            ]);
        }
        writeln!(out, "{table}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
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
    if let Some(path) = &args.who_can {
        return who_can(&args, path, &scenarios);
    }
    if let Some(sems) = &args.compare {
        return compare(&args, &sems.0, &scenarios);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut ops, mut mismatches) = (0usize, 0usize);
    for (i, s) in scenarios.iter().enumerate() {
        let reports = s.run();
        if !args.json && !args.brief {
            if i > 0 {
                writeln!(out)?;
            }
            let sem = if s.semantics.is_mainline() {
                String::new()
            } else {
                format!(", semantics {}", s.semantics)
            };
            writeln!(out, "{} ({} operations{sem})", s.source_name, reports.len())?;
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
            if args.brief {
                writeln!(
                    out,
                    "{}:{}: #{} {} => {}{}",
                    s.source_name,
                    r.line,
                    r.index,
                    r.text.replace('\n', " "),
                    verdict_text(r),
                    expectation_text(r)
                )?;
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
    let totals = format!(
        "{ops} operations, {} as expected, {mismatches} not",
        ops - mismatches
    );
    if args.brief {
        eprintln!("{totals}");
    } else if !args.json {
        writeln!(out, "\n{totals}")?;
    }
    out.flush()?;
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any order of distinct r, w, x gives the same bits, and prints back in rwx order.
        #[test]
        fn access_round_trips(mode in 1u32..8, turn in 0usize..3, reverse: bool) {
            let mut letters: Vec<char> = access_text(mode).chars().collect();
            let n = letters.len();
            letters.rotate_left(turn % n);
            if reverse {
                letters.reverse();
            }
            let s: String = letters.into_iter().collect();
            prop_assert_eq!(parse_access(&s), Ok(mode));
        }

        /// Anything else is refused, naming what is wrong.
        #[test]
        fn access_refuses_other_text(s in "\\PC{0,6}") {
            let valid = !s.is_empty()
                && s.chars().all(|c| "rwx".contains(c))
                && s.chars().collect::<std::collections::BTreeSet<_>>().len() == s.chars().count();
            match parse_access(&s) {
                Ok(_) => prop_assert!(valid, "{s:?} accepted"),
                Err(e) => {
                    prop_assert!(!valid, "{s:?} refused: {e}");
                    prop_assert!(e.contains("not one of") || e.contains("twice") || e.contains("at least one"));
                }
            }
        }
    }
}
