//! The acceptor's log: per slot, the value accepted under the highest ballot so far, or the
//! value known to be chosen; and the commit point, below which every slot is chosen.

use crate::memberships::{MembershipChange, Memberships};
use crate::ready::LogRecord;
use crate::types::{Ballot, SharedValue, Slot, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) ballot: Ballot,
    pub(crate) value: SharedValue,
    /// Known chosen. Every entry at or below the commit point is chosen whether or not
    /// this flag is set; the flag matters for entries learned above it.
    pub(crate) chosen: bool,
}

#[derive(Debug)]
pub(crate) struct Log {
    /// A BTreeMap because an acceptor may hold slots with gaps between them (an Accept for a
    /// later slot can arrive before an earlier one, or the earlier one may be lost).
    entries: BTreeMap<Slot, Entry>,
    /// Every slot in `1..=commit` is chosen; those above `compacted` are present here.
    commit: Slot,
    /// Slots `1..=compacted` are covered by a snapshot of the state machine and forgotten:
    /// all chosen, none held. A replica that needs them gets the snapshot instead.
    compacted: Slot,
    /// Memberships chosen at or below the commit point that still govern open slots. Noted
    /// as the commit point passes them (`commit_to`), the only place it moves.
    memberships: Memberships,
}

impl Log {
    /// Rebuilds the log from the durable records (latest per slot) and the durable commit
    /// point. Records at or below the commit point are chosen by definition.
    pub(crate) fn recover(
        records: &[LogRecord],
        commit: Slot,
        compacted: Slot,
        snapshot_memberships: Vec<MembershipChange>,
    ) -> Log {
        let mut entries = BTreeMap::new();
        for r in records.iter().filter(|r| r.slot > compacted) {
            let entry = Entry {
                ballot: r.ballot,
                value: r.value.clone(),
                chosen: r.chosen || r.slot <= commit,
            };
            entries.insert(r.slot, entry);
        }
        // The durable commit point can only name slots whose records were written before it
        // (same or earlier batch); trust it only as far as the records are contiguous.
        let mut log = Log {
            entries,
            commit: compacted,
            compacted,
            memberships: Memberships::from_changes(snapshot_memberships),
        };
        while log.commit < commit && log.entries.contains_key(&(log.commit + 1)) {
            log.commit_to(log.commit + 1);
        }
        log.absorb_chosen();
        log
    }

    pub(crate) fn commit(&self) -> Slot {
        self.commit
    }

    pub(crate) fn compacted(&self) -> Slot {
        self.compacted
    }

    /// The highest slot this log holds or knows chosen: every value this replica accepted or
    /// proposed is at or below it.
    pub(crate) fn last_slot(&self) -> Slot {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.commit)
    }

    pub(crate) fn memberships(&self) -> &Memberships {
        &self.memberships
    }

    pub(crate) fn plant_membership_delay_bug(&mut self) {
        self.memberships.plant_immediate_bug();
    }

    /// Moves the commit point to `slot` (the next one), noting a membership chosen there.
    fn commit_to(&mut self, slot: Slot) {
        debug_assert_eq!(
            slot,
            self.commit + 1,
            "the commit point moves one slot at a time"
        );
        if let Some(e) = self.entries.get(&slot) {
            if let Value::Membership(m) = &*e.value {
                self.memberships.note_chosen(slot, m);
            }
        }
        self.commit = slot;
    }

    /// Forgets every slot up to `upto`, which must be chosen (at or below the commit point):
    /// a snapshot of the state machine now stands for them.
    pub(crate) fn compact(&mut self, upto: Slot) {
        assert!(
            upto <= self.commit,
            "compacting up to slot {upto}, beyond the commit point {}",
            self.commit
        );
        if upto <= self.compacted {
            return;
        }
        self.entries = self.entries.split_off(&(upto + 1));
        self.compacted = upto;
        self.memberships.prune(upto);
    }

    /// Installs a snapshot covering `1..=upto` from another replica: every slot up to it is
    /// chosen, and what this log held for them is superseded.
    pub(crate) fn install_snapshot(&mut self, upto: Slot, memberships: Vec<MembershipChange>) {
        assert!(
            upto > self.commit,
            "a snapshot that is not ahead is not installed"
        );
        self.entries = self.entries.split_off(&(upto + 1));
        self.compacted = upto;
        self.commit = upto;
        self.memberships.replace(memberships);
        self.absorb_chosen();
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&Entry> {
        self.entries.get(&slot)
    }

    pub(crate) fn is_chosen(&self, slot: Slot) -> bool {
        slot <= self.commit || self.entries.get(&slot).is_some_and(|e| e.chosen)
    }

    /// Entries from `first` on, in slot order.
    pub(crate) fn range_from(&self, first: Slot) -> impl Iterator<Item = (&Slot, &Entry)> {
        self.entries.range(first..)
    }

    /// Records `value` accepted under `ballot`. The caller has checked the promise. A chosen
    /// slot keeps its value: Paxos guarantees any later proposal for it carries the same one.
    pub(crate) fn accept(
        &mut self,
        slot: Slot,
        ballot: Ballot,
        value: SharedValue,
        planted_ignore_ballots: bool,
    ) -> LogRecord {
        if let Some(e) = self.entries.get_mut(&slot) {
            if e.chosen || slot <= self.commit {
                assert!(
                    e.value == value,
                    "safety: slot {slot} is chosen with another value than the one accepted \
                     under ballot {ballot}"
                );
            }
            assert!(
                ballot >= e.ballot || e.chosen || planted_ignore_ballots,
                "acceptor replaced slot {slot}'s ballot {} with lower {ballot}",
                e.ballot
            );
            e.ballot = ballot;
            e.value = value.clone();
            return LogRecord {
                slot,
                ballot,
                value,
                chosen: e.chosen,
            };
        }
        self.entries.insert(
            slot,
            Entry {
                ballot,
                value: value.clone(),
                chosen: false,
            },
        );
        LogRecord {
            slot,
            ballot,
            value,
            chosen: false,
        }
    }

    /// Records that `value` is chosen in `slot`. Returns the record to persist, or `None` if
    /// this was already known. A slot can never be chosen with two different values.
    pub(crate) fn learn(
        &mut self,
        slot: Slot,
        ballot: Ballot,
        value: &SharedValue,
    ) -> Option<LogRecord> {
        if let Some(e) = self.entries.get_mut(&slot) {
            if e.chosen || slot <= self.commit {
                assert!(
                    e.value == *value,
                    "safety: slot {slot} learned chosen with two different values"
                );
                return None;
            }
            e.chosen = true;
            e.value = value.clone();
            e.ballot = e.ballot.max(ballot);
            return Some(LogRecord {
                slot,
                ballot: e.ballot,
                value: value.clone(),
                chosen: true,
            });
        }
        self.entries.insert(
            slot,
            Entry {
                ballot,
                value: value.clone(),
                chosen: true,
            },
        );
        Some(LogRecord {
            slot,
            ballot,
            value: value.clone(),
            chosen: true,
        })
    }

    /// Marks slots chosen because the leader of `ballot` says its commit point is `upto`: an
    /// entry accepted under that very ballot holds the leader's value, which is chosen. Slots
    /// held under another ballot (or missing) stop the advance; they need a `Learn`.
    pub(crate) fn commit_by_ballot(&mut self, ballot: Ballot, upto: Slot) {
        while self.commit < upto {
            let next = self.commit + 1;
            match self.entries.get_mut(&next) {
                Some(e) if e.chosen || e.ballot == ballot => {
                    e.chosen = true;
                    self.commit_to(next);
                }
                _ => break,
            }
        }
        self.absorb_chosen();
    }

    /// Advances the commit point over entries already flagged chosen.
    pub(crate) fn absorb_chosen(&mut self) {
        while let Some(e) = self.entries.get(&(self.commit + 1)) {
            if !e.chosen {
                break;
            }
            self.commit_to(self.commit + 1);
        }
    }

    /// Marks a slot chosen in memory (the leader counted a quorum). No record is needed: the
    /// entry was already persisted as accepted and the commit point covers it.
    pub(crate) fn mark_chosen(&mut self, slot: Slot, value: &SharedValue) {
        let e = self
            .entries
            .get_mut(&slot)
            .expect("leader's own acceptor holds every slot it proposed");
        assert!(
            e.value == *value,
            "safety: slot {slot} chosen with a value its leader did not hold"
        );
        e.chosen = true;
        self.absorb_chosen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;
    use std::sync::Arc;

    fn v(n: u64) -> SharedValue {
        Arc::new(Value::Commands(vec![crate::types::Command::new(
            n,
            n,
            vec![],
        )]))
    }

    #[test]
    fn commit_by_ballot_stops_at_foreign_ballot() {
        let mut log = Log::recover(&[], 0, 0, Vec::new());
        let b1 = Ballot::new(1, 1);
        let b2 = Ballot::new(2, 2);
        log.accept(1, b2, v(1), false);
        log.accept(2, b1, v(2), false);
        log.accept(3, b2, v(3), false);
        log.commit_by_ballot(b2, 3);
        assert_eq!(log.commit(), 1);
        log.learn(2, b2, &v(2));
        assert_eq!(log.commit(), 1, "learn does not move commit by itself");
        log.absorb_chosen();
        assert_eq!(log.commit(), 2);
        log.commit_by_ballot(b2, 3);
        assert_eq!(log.commit(), 3);
    }

    #[test]
    #[should_panic(expected = "safety")]
    fn chosen_slot_refuses_other_value() {
        let mut log = Log::recover(&[], 0, 0, Vec::new());
        log.learn(1, Ballot::new(1, 1), &v(1));
        log.learn(1, Ballot::new(1, 1), &v(2));
    }

    #[test]
    fn recover_trusts_commit_only_over_contiguous_records() {
        let b = Ballot::new(1, 1);
        let rec = |slot| LogRecord {
            slot,
            ballot: b,
            value: v(slot),
            chosen: false,
        };
        let log = Log::recover(&[rec(1), rec(2), rec(4)], 4, 0, Vec::new());
        assert_eq!(log.commit(), 2);
    }

    #[test]
    fn compaction_forgets_chosen_slots_only() {
        let b = Ballot::new(1, 1);
        let rec = |slot| LogRecord {
            slot,
            ballot: b,
            value: v(slot),
            chosen: false,
        };
        let mut log = Log::recover(&[rec(1), rec(2), rec(3), rec(5)], 3, 0, Vec::new());
        log.compact(2);
        assert_eq!((log.compacted(), log.commit()), (2, 3));
        assert!(log.get(2).is_none() && log.get(3).is_some());
        assert!(log.is_chosen(1), "compacted slots are chosen");
        // Recovery above a snapshot: records at or below it are ignored, the commit point
        // starts at it.
        let log = Log::recover(&[rec(2), rec(4), rec(5)], 5, 3, Vec::new());
        assert_eq!((log.compacted(), log.commit()), (3, 5));
        // Installing a snapshot ahead of the commit point.
        let mut log = Log::recover(&[rec(1), rec(7)], 1, 0, Vec::new());
        log.learn(7, b, &v(7));
        log.install_snapshot(6, Vec::new());
        assert_eq!((log.compacted(), log.commit()), (6, 7));
        assert!(log.get(1).is_none());
    }

    #[test]
    #[should_panic(expected = "beyond the commit point")]
    fn compaction_past_the_commit_point_is_a_bug() {
        let mut log = Log::recover(&[], 0, 0, Vec::new());
        log.compact(1);
    }
}
