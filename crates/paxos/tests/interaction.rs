//! Golden interaction tests: scripted message exchanges between real engines, with the
//! expected trace under each command, in `tests/interaction/*.txt` (format and commands in
//! `tests/interaction/README.md`).
//!
//! `cargo test -p synod-paxos --test interaction` checks every file; with `REWRITE=1` the
//! files are rewritten with the actual output instead (regenerate on purpose, then review
//! the diff: the expected text is the specification).

#[path = "interaction/harness.rs"]
mod harness;
#[path = "interaction/render.rs"]
mod render;

use harness::{Args, Harness};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// One part of a scenario file: text kept verbatim (comments, blank lines) or a command with
/// its expected output.
enum Item {
    Text(String),
    Case {
        line: usize,
        command: String,
        expected: Vec<String>,
    },
}

fn parse(path: &Path, src: &str) -> Vec<Item> {
    let lines: Vec<&str> = src.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            items.push(Item::Text(line.to_string()));
            i += 1;
            continue;
        }
        assert!(
            lines.get(i + 1) == Some(&"----"),
            "{}:{}: a command must be followed by a `----` line",
            path.display(),
            i + 1
        );
        let mut expected = Vec::new();
        let mut j = i + 2;
        while j < lines.len() && !lines[j].trim().is_empty() {
            expected.push(lines[j].to_string());
            j += 1;
        }
        items.push(Item::Case {
            line: i + 1,
            command: line.trim().to_string(),
            expected,
        });
        i = j;
    }
    items
}

/// Runs one command; engine panics (broken invariants) become output so they are reported
/// with the command that caused them.
fn run_command(cluster: &mut Option<Harness>, command: &str) -> Result<Vec<String>, String> {
    let args = Args::parse(command);
    if args.name == "cluster" {
        let (h, summary) = Harness::new(&args)?;
        *cluster = Some(h);
        return Ok(vec![summary]);
    }
    let h = cluster
        .as_mut()
        .ok_or("the first command must be `cluster`")?;
    match catch_unwind(AssertUnwindSafe(|| h.exec(&args))) {
        Ok(Ok(lines)) if lines.is_empty() => Ok(vec!["ok".to_string()]),
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("engine panicked: {msg}"))
        }
    }
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out += &format!("   {}\n", expected[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("-  {}\n", expected[i]);
            i += 1;
        } else {
            out += &format!("+  {}\n", actual[j]);
            j += 1;
        }
    }
    out
}

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interaction")
        .join(format!("{name}.txt"))
}

fn run_file(name: &str) {
    let path = scenario_path(name);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rewrite = std::env::var_os("REWRITE").is_some_and(|v| v == "1");
    let mut cluster = None;
    let mut failures = Vec::new();
    let mut rewritten = Vec::new();
    for item in parse(&path, &src) {
        let (line, command, expected) = match item {
            Item::Text(text) => {
                rewritten.push(text);
                continue;
            }
            Item::Case {
                line,
                command,
                expected,
            } => (line, command, expected),
        };
        let actual = match run_command(&mut cluster, &command) {
            Ok(lines) => lines,
            Err(e) if rewrite => vec![format!("error: {e}")],
            Err(e) => panic!("{}:{line}: `{command}`: {e}", path.display()),
        };
        if actual != expected {
            failures.push(format!(
                "{}:{line}: `{command}`\n{}",
                path.display(),
                diff(&expected, &actual)
            ));
        }
        rewritten.push(command);
        rewritten.push("----".to_string());
        rewritten.extend(actual);
    }
    if rewrite {
        let text = rewritten.join("\n") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    assert!(
        failures.is_empty(),
        "{} command(s) differ from the expected trace (- expected, + actual; REWRITE=1 \
         regenerates, then review the diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { run_file(stringify!($name)); } )*
        const SCENARIOS: &[&str] = &[$(stringify!($name)),*];
    };
}

scenarios!(
    election,
    replication,
    leader_change,
    nack_backoff,
    reads,
    catchup,
    prevote_no_disruption,
    prevote_livelock,
);

/// A scenario file nobody runs would rot silently.
#[test]
fn every_scenario_file_is_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interaction");
    for entry in std::fs::read_dir(&dir).expect("scenario directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            assert!(
                SCENARIOS.contains(&stem),
                "{} is not listed in scenarios!",
                path.display()
            );
        }
    }
}

#[test]
fn diff_marks_changed_lines() {
    let e: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let a: Vec<String> = ["a", "x", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(diff(&e, &a), "   a\n-  b\n+  x\n   c\n");
}
