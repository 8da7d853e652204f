//! Finding the `synod` binary to run.
//!
//! A crate cannot depend on another crate's binary (`CARGO_BIN_EXE_*` exists only within the
//! binary's own package), so the harness looks for it next to itself: `synod-chaos` lives in
//! `target/<profile>/`, and its tests in `target/<profile>/deps/`, where `synod` is built by
//! `cargo build -p synod-server [--release]`. `SYNOD_BIN` overrides the search.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The `synod` binary to run, or why there is none.
pub fn find_synod() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SYNOD_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("SYNOD_BIN={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let found = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("synod"))
        .find(|p| p.is_file());
    let profile = if exe.components().any(|c| c.as_os_str() == "release") {
        " --release"
    } else {
        ""
    };
    let path = found.ok_or_else(|| {
        format!(
            "no synod binary next to {}: build it first with `cargo build -p synod-server{profile}` \
             (or point SYNOD_BIN at one)",
            exe.display()
        )
    })?;
    warn_if_stale(&path);
    Ok(path)
}

/// Running an old build by mistake would test the wrong code: say so loudly (not fatal, since
/// sources may be mid-edit while a long run goes on).
fn warn_if_stale(binary: &Path) {
    let Some(built) = modified(binary) else {
        return;
    };
    let Some(workspace) = binary.ancestors().find(|d| d.join("Cargo.lock").is_file()) else {
        return;
    };
    let newest = ["server", "paxos", "kv", "storage"]
        .iter()
        .filter_map(|c| newest_source(&workspace.join("crates").join(c).join("src")))
        .max();
    if let Some((time, path)) = newest {
        if time > built {
            eprintln!(
                "warning: {} is older than {} — rebuild with `cargo build -p synod-server`",
                binary.display(),
                path.display()
            );
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_source(&path)
        } else {
            modified(&path).map(|t| (t, path))
        };
        if let Some(c) = candidate {
            if newest.as_ref().is_none_or(|n| c.0 > n.0) {
                newest = Some(c);
            }
        }
    }
    newest
}
