//! Which membership decides each slot. A membership chosen in slot `m` governs the slots from
//! `membership_effective_slot(m)` (= `m + MEMBERSHIP_DELAY_SLOTS`, or 2 for slot 1) on, until
//! a later one takes over. Only chosen memberships are listed here: a leader proposes slot `s`
//! only once every slot up to `s - alpha` is chosen, so the membership governing any slot it
//! proposes is known and is the same at every leader (docs/PROTOCOL.md).

use crate::types::{membership_effective_slot, Membership, Slot};

/// A membership chosen in `slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    pub slot: Slot,
    pub membership: Membership,
}

impl MembershipChange {
    /// The first slot this membership governs.
    pub fn effective(&self) -> Slot {
        membership_effective_slot(self.slot)
    }
}

/// Chosen memberships in slot order, oldest first, pruned of those no slot above the
/// compaction point needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memberships {
    changes: Vec<MembershipChange>,
    /// `PlantedBug::MembershipWithoutDelay`: a membership governs from the very next slot.
    immediate: bool,
}

impl Memberships {
    pub(crate) fn from_changes(changes: Vec<MembershipChange>) -> Memberships {
        let mut memberships = Memberships::default();
        for c in changes {
            memberships.note_chosen(c.slot, &c.membership);
        }
        memberships
    }

    pub(crate) fn plant_immediate_bug(&mut self) {
        self.immediate = true;
    }

    fn effective(&self, c: &MembershipChange) -> Slot {
        if self.immediate {
            c.slot + 1
        } else {
            c.effective()
        }
    }

    /// The first slot a membership chosen in `slot` governs, as this replica counts.
    pub(crate) fn effective_slot(&self, slot: Slot) -> Slot {
        if self.immediate {
            slot + 1
        } else {
            membership_effective_slot(slot)
        }
    }

    /// A membership was found chosen in `slot` (called in slot order as the commit point
    /// passes it; repeats are ignored).
    pub(crate) fn note_chosen(&mut self, slot: Slot, membership: &Membership) {
        if self.changes.last().is_some_and(|c| c.slot >= slot) {
            return;
        }
        self.changes.push(MembershipChange {
            slot,
            membership: membership.clone(),
        });
    }

    /// The membership deciding `slot`, if a chosen one does.
    pub(crate) fn for_slot(&self, slot: Slot) -> Option<&Membership> {
        self.changes
            .iter()
            .rev()
            .find(|c| self.effective(c) <= slot)
            .map(|c| &c.membership)
    }

    /// The newest chosen membership (it will govern every slot from its effective one on).
    pub(crate) fn latest(&self) -> Option<&MembershipChange> {
        self.changes.last()
    }

    /// Memberships governing some slot from `slot` on: the one in force at `slot` and every
    /// later one. Quorums that must hold for "the cluster from here on" (leases, read
    /// confirmation, check-quorum, elections) are counted in each of them.
    pub(crate) fn governing_from(&self, slot: Slot) -> impl Iterator<Item = &Membership> + '_ {
        let first = self
            .changes
            .iter()
            .rposition(|c| self.effective(c) <= slot)
            .unwrap_or(0);
        self.changes[first..].iter().map(|c| &c.membership)
    }

    /// The changes a snapshot covering `1..=upto` must carry: those chosen at or below it
    /// that govern some slot above it, and the one before them (see `prune`).
    pub(crate) fn for_snapshot(&self, upto: Slot) -> Vec<MembershipChange> {
        let chosen: Vec<&MembershipChange> =
            self.changes.iter().filter(|c| c.slot <= upto).collect();
        let first = chosen
            .iter()
            .rposition(|c| self.effective(c) <= upto + 1)
            .unwrap_or(0)
            .saturating_sub(1);
        chosen[first..].iter().map(|&c| c.clone()).collect()
    }

    /// Forgets memberships no slot above `upto` is decided by, except the one before the
    /// first that is: until a change is complete its old voters may have to lead the new
    /// ones through it (`Engine::may_campaign`).
    pub(crate) fn prune(&mut self, upto: Slot) {
        if let Some(first) = self
            .changes
            .iter()
            .rposition(|c| self.effective(c) <= upto + 1)
        {
            self.changes.drain(..first.saturating_sub(1));
        }
    }

    /// Replaces everything with what a snapshot carried.
    pub(crate) fn replace(&mut self, changes: Vec<MembershipChange>) {
        let immediate = self.immediate;
        *self = Memberships::from_changes(changes);
        self.immediate = immediate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MEMBERSHIP_DELAY_SLOTS as ALPHA;

    fn m(ids: &[u64]) -> Membership {
        Membership::new(ids.iter().copied()).unwrap()
    }

    #[test]
    fn a_membership_governs_alpha_slots_after_it_is_chosen() {
        let mut c = Memberships::default();
        assert!(c.for_slot(5).is_none());
        c.note_chosen(1, &m(&[1, 2, 3]));
        assert_eq!(c.for_slot(2), Some(&m(&[1, 2, 3])));
        c.note_chosen(10, &m(&[1, 2, 3, 4]));
        c.note_chosen(10, &m(&[9])); // a repeat is ignored
        assert_eq!(c.for_slot(10 + ALPHA - 1), Some(&m(&[1, 2, 3])));
        assert_eq!(c.for_slot(10 + ALPHA), Some(&m(&[1, 2, 3, 4])));
        assert_eq!(c.governing_from(11).count(), 2);
        assert_eq!(c.governing_from(10 + ALPHA).count(), 1);
        // A snapshot at slot 50 carries both (the old one still governs slot 51); one at
        // slot 5 carries only the first (the second was not chosen yet).
        assert_eq!(c.for_snapshot(50).len(), 2);
        assert_eq!(c.for_snapshot(5).len(), 1);
        // The predecessor of the governing one is kept.
        assert_eq!(c.for_snapshot(10 + ALPHA).len(), 2);
        c.note_chosen(20, &m(&[5]));
        assert_eq!(c.for_snapshot(20 + ALPHA).len(), 2);
        c.prune(50);
        assert_eq!(c.governing_from(0).count(), 3);
        c.prune(20 + ALPHA);
        assert_eq!(c.governing_from(0).count(), 2);
        assert_eq!(c.governing_from(20 + ALPHA).count(), 1);
        assert_eq!(c.latest().unwrap().slot, 20);
    }
}
