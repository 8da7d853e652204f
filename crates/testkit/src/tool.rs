//! Finding a program the machine provides rather than this workspace builds: etcd's own
//! client and server, which the compatibility tests and the benchmarks drive.
//!
//! Looked up as `$<NAME>_BIN` if set, then on `PATH`, then in `/usr/bin` (where Debian puts
//! them, for a `PATH` that lacks it). A missing tool is an error that says which package
//! installs it; tests call [`Tool::require`], which panics with it: a test never skips.

use crate::binary::overridden;
use crate::error::HarnessError;
use std::path::PathBuf;

/// A program installed on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// The executable's file name.
    pub name: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
    /// The environment variable naming a program to use instead.
    pub env_override: &'static str,
}

impl Tool {
    pub const ETCDCTL: Tool = Tool {
        name: "etcdctl",
        package: "etcd-client",
        env_override: "ETCDCTL_BIN",
    };
    pub const ETCD: Tool = Tool {
        name: "etcd",
        package: "etcd-server",
        env_override: "ETCD_BIN",
    };

    /// The program, or an error saying how to install it.
    pub fn find(self) -> Result<PathBuf, HarnessError> {
        if let Some(chosen) = overridden(self.env_override) {
            return chosen;
        }
        let candidates = self.candidates();
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => Ok(path.clone()),
            None => Err(HarnessError::MissingBinary {
                searched: candidates,
                hint: format!(
                    "no {}: install it with `apt-get install {}` (scripts/test.sh does) or \
                     point {} at one",
                    self.name, self.package, self.env_override
                ),
            }),
        }
    }

    /// The program; panics, saying how to install it, when there is none.
    pub fn require(self) -> PathBuf {
        self.find().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Where to look, in order.
    fn candidates(self) -> Vec<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(self.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let missing = Tool {
            name: "no-such-etcd-tool",
            package: "no-such-package",
            env_override: "NO_SUCH_ETCD_TOOL_BIN",
        };
        let e = missing.find().unwrap_err().to_string();
        assert!(e.contains("apt-get install no-such-package"), "{e}");
        assert!(e.contains("NO_SUCH_ETCD_TOOL_BIN"), "{e}");
        let panic = std::panic::catch_unwind(|| missing.require()).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.contains("apt-get install no-such-package"), "{text}");
    }

    #[test]
    fn a_tool_on_the_path_is_found() {
        let sh = Tool {
            name: "sh",
            package: "dash",
            env_override: "NO_SUCH_SH_BIN",
        };
        assert!(sh.find().unwrap().is_file());
    }
}
