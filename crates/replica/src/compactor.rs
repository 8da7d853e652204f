//! Automatic compaction of the key-value store's history (etcd's `--auto-compaction-mode`
//! and `--auto-compaction-retention`). Without it every revision is kept until a client
//! compacts, and snapshots and the data directory grow with the history.
//!
//! Only the leader decides; the compaction itself is a `Compact` request through the log,
//! so every replica compacts at the same revision.

use crate::Time;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// How history is retained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep the newest `n` revisions (`--auto-compaction-mode revision`).
    Revisions(i64),
    /// Keep the revisions of the last period (`--auto-compaction-mode periodic`).
    Period(Duration),
}

impl Retention {
    /// Parses etcd's flags: `revision` takes a count; `periodic` takes a duration with a
    /// unit (`30m`, `1h`, `90s`) or a bare number of hours. `0` turns compaction off.
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, RetentionError> {
        let retention = retention.trim();
        match mode {
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| {
                    RetentionError::new(format!(
                        "--auto-compaction-retention {retention:?}: a number of revisions \
                         (mode revision)"
                    ))
                })?;
                if n < 0 {
                    return Err(RetentionError::new(
                        "--auto-compaction-retention must not be negative",
                    ));
                }
                Ok((n > 0).then_some(Retention::Revisions(n)))
            }
            "periodic" => {
                let (digits, unit) = retention
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or((retention, "h"), |i| retention.split_at(i));
                let n: u64 = digits.parse().map_err(|_| {
                    RetentionError::new(format!(
                        "--auto-compaction-retention {retention:?}: a duration such as 30m, \
                         1h or 90s (mode periodic)"
                    ))
                })?;
                let secs = match unit {
                    "s" => n,
                    "m" => n * 60,
                    "h" => n * 3600,
                    _ => {
                        return Err(RetentionError::new(format!(
                            "--auto-compaction-retention {retention:?}: unit must be s, m or h"
                        )))
                    }
                };
                Ok((secs > 0).then_some(Retention::Period(Duration::from_secs(secs))))
            }
            _ => Err(RetentionError::new(format!(
                "--auto-compaction-mode {mode:?}: periodic or revision"
            ))),
        }
    }
}

/// Why etcd's auto-compaction flags were refused (the message names the flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionError(String);

impl RetentionError {
    fn new(message: impl Into<String>) -> RetentionError {
        RetentionError(message.into())
    }
}

impl fmt::Display for RetentionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RetentionError {}

/// Revision mode looks this often (etcd looks every five minutes; more often costs nothing
/// and keeps the history closer to the bound).
const REVISION_CHECK: Duration = Duration::from_secs(5);

/// Most revision samples periodic mode keeps.
const SAMPLES_MAX: usize = 64;

#[derive(Debug)]
pub(crate) struct Compactor {
    retention: Retention,
    last_check: Option<Time>,
    /// Periodic mode: `(when, revision then)`, oldest first.
    samples: VecDeque<(Time, i64)>,
}

impl Compactor {
    pub(crate) fn new(retention: Retention) -> Compactor {
        Compactor {
            retention,
            last_check: None,
            samples: VecDeque::new(),
        }
    }

    /// The revision to compact the store to now, if any: called on every tick at the
    /// leader with the store's current and compacted revisions.
    pub(crate) fn due(&mut self, now: Time, revision: i64, compacted: i64) -> Option<i64> {
        let every = match self.retention {
            Retention::Revisions(_) => REVISION_CHECK,
            Retention::Period(p) => (p / 10).max(Duration::from_secs(1)),
        };
        if self
            .last_check
            .is_some_and(|t| now.saturating_sub(t) < every)
        {
            return None;
        }
        self.last_check = Some(now);
        let target = match self.retention {
            Retention::Revisions(n) => revision - n,
            Retention::Period(p) => {
                if self.samples.len() == SAMPLES_MAX {
                    self.samples.pop_front();
                }
                self.samples.push_back((now, revision));
                // The newest revision that is at least one period old.
                self.samples
                    .iter()
                    .rev()
                    .find(|(t, _)| now.saturating_sub(*t) >= p)
                    .map(|&(_, r)| r)?
            }
        };
        (target > compacted.max(1)).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_like_etcd() {
        assert_eq!(Retention::parse("periodic", "0"), Ok(None));
        assert_eq!(
            Retention::parse("periodic", "1"),
            Ok(Some(Retention::Period(Duration::from_secs(3600))))
        );
        assert_eq!(
            Retention::parse("periodic", "30m"),
            Ok(Some(Retention::Period(Duration::from_secs(1800))))
        );
        assert_eq!(
            Retention::parse("revision", "1000"),
            Ok(Some(Retention::Revisions(1000)))
        );
        for (mode, bad) in [("periodic", "1d"), ("periodic", "x"), ("revision", "-1")] {
            assert!(Retention::parse(mode, bad).is_err(), "{mode} {bad}");
        }
        assert!(Retention::parse("hourly", "1").is_err());
    }

    #[test]
    fn revision_mode_keeps_the_newest_n() {
        let mut c = Compactor::new(Retention::Revisions(100));
        let t0 = Time::from_secs(1000);
        assert_eq!(c.due(t0, 50, -1), None, "not enough history yet");
        assert_eq!(c.due(t0 + REVISION_CHECK, 1000, -1), Some(900));
        assert_eq!(
            c.due(t0 + REVISION_CHECK, 2000, 900),
            None,
            "checked just now"
        );
        assert_eq!(c.due(t0 + 2 * REVISION_CHECK, 950, 900), None);
    }

    #[test]
    fn periodic_mode_keeps_one_period() {
        let p = Duration::from_secs(100);
        let mut c = Compactor::new(Retention::Period(p));
        let t0 = Time::from_secs(1000);
        assert_eq!(c.due(t0, 10, -1), None);
        assert_eq!(c.due(t0 + Duration::from_secs(50), 500, -1), None);
        assert_eq!(c.due(t0 + Duration::from_secs(100), 900, -1), Some(10));
        assert_eq!(c.due(t0 + Duration::from_secs(150), 1500, 10), Some(500));
    }
}
