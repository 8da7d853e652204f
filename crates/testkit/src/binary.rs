//! Finding a built binary to run.
//!
//! A crate cannot depend on another package's binary (`CARGO_BIN_EXE_*` exists only within
//! the binary's own package), so the kit looks where Cargo puts it: `$<NAME>_BIN` if set (an
//! explicit choice wins), `CARGO_BIN_EXE_<name>` if Cargo set it at run time, next to the
//! running executable (`target/<profile>/` for a program, `target/<profile>/deps/` for a
//! test), then `$CARGO_TARGET_DIR/<profile>/` and this workspace's `target/<profile>/`, the
//! running executable's profile first. A missing binary is an error that says how to build
//! it; tests call [`Bin::require`], which panics with it: a test never skips.

use crate::error::HarnessError;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A binary of this workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bin {
    /// The executable's file name.
    pub name: &'static str,
    /// The package that builds it (`cargo build -p <package>`).
    pub package: &'static str,
    /// The environment variable naming a binary to use instead.
    pub env_override: &'static str,
    /// The crates under `crates/` whose sources go into it: a build older than any of them
    /// is reported as stale.
    pub sources: &'static [&'static str],
}

impl Bin {
    pub const SYNOD: Bin = Bin {
        name: "synod",
        package: "synod-server",
        env_override: "SYNOD_BIN",
        sources: &["server", "replica", "paxos", "kv", "storage"],
    };

    /// The binary, or an error saying how to build it. Warns (on stderr) when it is older
    /// than its sources: running an old build by mistake would test the wrong code (not
    /// fatal, since sources may be mid-edit while a long run goes on).
    pub fn find(self) -> Result<PathBuf, HarnessError> {
        if let Some(chosen) = overridden(self.env_override) {
            return chosen;
        }
        let candidates = self.candidates();
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => {
                self.warn_if_stale(path);
                Ok(path.clone())
            }
            None => Err(HarnessError::MissingBinary {
                searched: candidates,
                hint: format!(
                    "no {} binary: build it first with `{}` (or point {} at one)",
                    self.name,
                    self.build_command(),
                    self.env_override
                ),
            }),
        }
    }

    /// The binary; panics, saying how to build it, when there is none.
    pub fn require(self) -> PathBuf {
        self.find().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `cargo build -p <package>`, with `--release` when the running executable is a
    /// release build.
    pub fn build_command(self) -> String {
        let release = if running_profile() == "release" {
            " --release"
        } else {
            ""
        };
        format!("cargo build -p {}{release}", self.package)
    }

    /// Where to look, in order.
    fn candidates(self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let cargo_var = format!("CARGO_BIN_EXE_{}", self.name);
        if let Some(path) = std::env::var_os(cargo_var) {
            out.push(PathBuf::from(path));
        }
        if let Ok(exe) = std::env::current_exe() {
            out.extend(exe.ancestors().skip(1).take(3).map(|d| d.join(self.name)));
        }
        let workspace_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let targets = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([workspace_target]);
        let first = running_profile();
        let other = if first == "release" {
            "debug"
        } else {
            "release"
        };
        for target in targets {
            for profile in [first, other] {
                out.push(target.join(profile).join(self.name));
            }
        }
        out
    }

    fn warn_if_stale(self, binary: &Path) {
        let Some(built) = modified(binary) else {
            return;
        };
        let Some(workspace) = binary.ancestors().find(|d| d.join("Cargo.lock").is_file()) else {
            return;
        };
        let newest = self
            .sources
            .iter()
            .filter_map(|c| newest_file(&workspace.join("crates").join(c).join("src")))
            .max();
        if let Some((time, path)) = newest {
            if time > built {
                eprintln!(
                    "warning: {} is older than {}: rebuild with `{}`",
                    binary.display(),
                    path.display(),
                    self.build_command()
                );
            }
        }
    }
}

/// The file `$var` names, if it is set (an explicit choice wins over any search).
pub(crate) fn overridden(var: &str) -> Option<Result<PathBuf, HarnessError>> {
    let path = PathBuf::from(std::env::var_os(var)?);
    Some(if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary {
            searched: vec![path],
            hint: format!("{var} names no file"),
        })
    })
}

/// `release` when the running executable lives under a `release` directory, else `debug`.
fn running_profile() -> &'static str {
    let release = std::env::current_exe()
        .is_ok_and(|exe| exe.components().any(|c| c.as_os_str() == "release"));
    if release {
        "release"
    } else {
        "debug"
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_file(&path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let missing = Bin {
            name: "no-such-synod-binary",
            package: "no-such-package",
            env_override: "NO_SUCH_SYNOD_BINARY_BIN",
            sources: &[],
        };
        let e = missing.find().unwrap_err().to_string();
        assert!(e.contains("cargo build -p no-such-package"), "{e}");
        assert!(e.contains("NO_SUCH_SYNOD_BINARY_BIN"), "{e}");
        let panic = std::panic::catch_unwind(|| missing.require()).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.contains("cargo build -p no-such-package"), "{text}");
    }

    #[test]
    fn a_test_looks_next_to_itself_first() {
        let c = Bin::SYNOD.candidates();
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>/deps/synod, target/<profile>/synod
        assert!(c.contains(&exe.parent().unwrap().parent().unwrap().join("synod")));
    }
}
