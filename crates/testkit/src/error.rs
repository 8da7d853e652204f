//! What can go wrong when running member processes.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug)]
pub enum HarnessError {
    /// A file operation or a process start failed; `what` says on what.
    Io {
        what: String,
        source: std::io::Error,
    },
    /// No free port could be found for a member.
    Ports(String),
    /// A binary to run was not found.
    MissingBinary {
        searched: Vec<PathBuf>,
        hint: String,
    },
    /// A member that must be down runs, or one that must run does not.
    Running { member: String, running: bool },
    /// A member did not exit within the time given after SIGTERM (it was killed).
    StopTimeout { member: String, within: Duration },
    /// A member exited by itself; the end of its log says why.
    Exited {
        member: String,
        status: String,
        log_tail: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Io { what, source } => write!(f, "{what}: {source}"),
            HarnessError::Ports(why) => write!(f, "no free port: {why}"),
            HarnessError::MissingBinary { searched, hint } => {
                let searched: Vec<String> =
                    searched.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{hint} (looked at {})", searched.join(", "))
            }
            HarnessError::Running { member, running } => {
                let state = if *running { "running" } else { "not running" };
                write!(f, "member {member} is {state}")
            }
            HarnessError::StopTimeout { member, within } => write!(
                f,
                "member {member} did not exit within {within:?} of SIGTERM (killed)"
            ),
            HarnessError::Exited {
                member,
                status,
                log_tail,
            } => write!(
                f,
                "member {member} exited ({status}); the end of its log:\n{log_tail}"
            ),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
