//! Conditions of this member that clients and operators must see: each shows in
//! `Maintenance.Status`'s `errors` (`etcdctl endpoint status`) and in `/metrics`; one that
//! maps to an etcd alarm also shows in `Maintenance.Alarm` (`etcdctl alarm list`); one that
//! refuses writes makes the client port answer writes with that alarm's etcd error.
//!
//! To add a condition: a variant, its row in `ALL`, and an arm in each `match` below. Raise
//! and clear it through [`Conditions`] (reachable from every thread as `Metrics::conditions`).

use crate::error::ServerError;
use etcd_client::AlarmType;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The write-ahead log returned an error (a full disk or file table, a file-size limit, an
    /// I/O error): nothing this member promises can be made durable any more. It persists no
    /// more (so it answers no Prepare or Accept), refuses client writes, hands leadership on,
    /// and serves reads. Cleared only by a restart, which recovers the log from disk and
    /// peers: whether the failed write left a torn tail is for recovery to find out.
    WalUnwritable,
    /// The write-ahead log lost or damaged part of its synced tail (synod-storage reported a
    /// lost tail): this member may have forgotten promises and values it acknowledged, so it
    /// votes on nothing and serves no serializable read until it recovered them from a quorum
    /// of its peers (docs/PROTOCOL.md, "Recovery from a lost log tail"). Writes and
    /// linearizable reads still go through the leader.
    RecoveringFromPeers,
}

impl Condition {
    pub const ALL: [Condition; 2] = [Condition::WalUnwritable, Condition::RecoveringFromPeers];

    fn index(self) -> usize {
        match self {
            Condition::WalUnwritable => 0,
            Condition::RecoveringFromPeers => 1,
        }
    }

    /// Label in `/metrics` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Condition::WalUnwritable => "wal_unwritable",
            Condition::RecoveringFromPeers => "recovering_from_peers",
        }
    }

    /// The etcd alarm it raises, if any.
    ///
    /// The log failing is NOSPACE rather than CORRUPT: etcd raises NOSPACE when its backend
    /// cannot take more data, and then refuses writes and serves reads, which is exactly what
    /// this member can still do (its state is intact, only its log cannot grow); CORRUPT
    /// means a member's data disagrees with the cluster's, and refuses reads too. Clients
    /// and runbooks that handle NOSPACE ("free space, then restart or disarm") do the right
    /// thing here.
    pub fn alarm(self) -> Option<AlarmType> {
        match self {
            Condition::WalUnwritable => Some(AlarmType::Nospace),
            Condition::RecoveringFromPeers => None,
        }
    }

    /// The error client writes get while it holds, if it refuses them.
    pub fn write_refusal(self) -> Option<ServerError> {
        match self {
            Condition::WalUnwritable => Some(ServerError::NoSpace),
            // Writes are forwarded to the leader and applied by the cluster: safe.
            Condition::RecoveringFromPeers => None,
        }
    }

    /// What `etcdctl alarm disarm` is told: a condition is a fact about this member, not a
    /// flag a client may clear.
    pub fn disarm_refusal(self) -> &'static str {
        match self {
            Condition::WalUnwritable => {
                "synod: this member's write-ahead log failed; the alarm clears when the member \
                 restarts (free the disk space or descriptors first)"
            }
            Condition::RecoveringFromPeers => {
                "synod: this member is recovering lost log entries from its peers; it clears \
                 by itself once a quorum of them answered"
            }
        }
    }

    /// The text in `Maintenance.Status`'s `errors`: etcd's `memberID:<id> alarm:<TYPE>` for
    /// an alarm.
    pub fn status_error(self, member_id: u64) -> String {
        match self.alarm() {
            Some(alarm) => format!("memberID:{member_id} alarm:{}", alarm.as_str_name()),
            None if self == Condition::RecoveringFromPeers => {
                format!("memberID:{member_id} synod: recovering lost log entries from its peers")
            }
            None => format!("synod: {}", self.name()),
        }
    }
}

/// Which conditions hold, with what each was raised for. Cheap to query from any thread.
#[derive(Debug, Default)]
pub struct Conditions {
    active: [AtomicBool; Condition::ALL.len()],
    detail: Mutex<[Option<String>; Condition::ALL.len()]>,
    /// Wakes tasks that act on a change (see `degraded.rs`).
    changed: tokio::sync::Notify,
}

impl Conditions {
    pub fn raise(&self, c: Condition, detail: String) {
        tracing::error!(
            condition = c.name(),
            alarm = c.alarm().map_or("none", |a| a.as_str_name()),
            "{detail}"
        );
        self.detail.lock().unwrap_or_else(|e| e.into_inner())[c.index()] = Some(detail);
        self.active[c.index()].store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    pub fn clear(&self, c: Condition) {
        if self.active[c.index()].swap(false, Ordering::AcqRel) {
            tracing::info!(condition = c.name(), "cleared");
            self.changed.notify_waiters();
        }
    }

    pub fn is_active(&self, c: Condition) -> bool {
        self.active[c.index()].load(Ordering::Acquire)
    }

    pub fn active(&self) -> impl Iterator<Item = Condition> + '_ {
        Condition::ALL.into_iter().filter(|&c| self.is_active(c))
    }

    /// Why writes are refused now, if they are.
    pub fn write_refusal(&self) -> Option<ServerError> {
        self.active().find_map(Condition::write_refusal)
    }

    /// What `c` was raised for, while it holds.
    pub fn detail(&self, c: Condition) -> Option<String> {
        if !self.is_active(c) {
            return None;
        }
        self.detail.lock().unwrap_or_else(|e| e.into_inner())[c.index()].clone()
    }

    /// Resolves at the next raise or clear (create it before checking the state).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Gauges for Prometheus: each condition, and each etcd alarm any condition raises.
    pub fn render(&self, out: &mut String) {
        let name = "synod_member_condition";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while this member is in the condition.\n# TYPE {name} gauge"
        );
        for c in Condition::ALL {
            let _ = writeln!(
                out,
                "{name}{{condition=\"{}\"}} {}",
                c.name(),
                u8::from(self.is_active(c))
            );
        }
        let name = "synod_alarm_active";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while this member raises the etcd alarm (etcdctl alarm list).\n\
             # TYPE {name} gauge"
        );
        let mut alarms: Vec<AlarmType> = Condition::ALL.iter().filter_map(|c| c.alarm()).collect();
        alarms.sort();
        alarms.dedup();
        for alarm in alarms {
            let on = self.active().any(|c| c.alarm() == Some(alarm));
            let _ = writeln!(
                out,
                "{name}{{alarm=\"{}\"}} {}",
                alarm.as_str_name(),
                u8::from(on)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_condition_shows_everywhere_until_cleared() {
        let c = Conditions::default();
        assert!(c.write_refusal().is_none());
        c.raise(Condition::WalUnwritable, "disk full".into());
        assert_eq!(c.write_refusal(), Some(ServerError::NoSpace));
        assert_eq!(
            c.detail(Condition::WalUnwritable).as_deref(),
            Some("disk full")
        );
        assert_eq!(
            Condition::WalUnwritable.status_error(42),
            "memberID:42 alarm:NOSPACE"
        );
        let mut text = String::new();
        c.render(&mut text);
        assert!(text.contains("synod_alarm_active{alarm=\"NOSPACE\"} 1\n"));
        assert!(text.contains("synod_member_condition{condition=\"wal_unwritable\"} 1\n"));
        c.clear(Condition::WalUnwritable);
        assert!(c.write_refusal().is_none());
        assert_eq!(c.detail(Condition::WalUnwritable), None);
    }
}
