//! Recovery from a lost log tail (recovery.rs): a replica whose disk forgot promises and
//! acceptances it had acknowledged stays silent until its peers told it enough.

use super::cluster::{cmd, Cluster};
use crate::{Ballot, NodeId, RecoveryPhase, Slot, Value};

/// Crashes `id` and keeps only its durable records up to `keep` (and no promise): the synced
/// tail of its log is gone.
fn lose_tail(c: &mut Cluster, id: NodeId, keep: Slot) {
    c.crash(id);
    let disk = c.disks.get_mut(&id).unwrap();
    disk.records.retain(|r| r.slot <= keep);
    disk.hard_state.promised = Ballot::ZERO;
    disk.hard_state.commit = disk.hard_state.commit.min(keep);
}

fn restart_recovering(c: &mut Cluster, id: NodeId) {
    c.start(id);
    c.engine(id).start_peer_recovery();
}

fn other(c: &Cluster, not: &[NodeId]) -> NodeId {
    *c.engines.keys().find(|id| !not.contains(id)).unwrap()
}

/// Every value delivered for `slot` by any node (more than one is a safety violation).
fn values_at(c: &Cluster, slot: Slot) -> Vec<Value> {
    let mut values: Vec<Value> = Vec::new();
    for applied in c.applied.values() {
        for (s, v) in applied {
            if *s == slot && !values.contains(v) {
                values.push(v.clone());
            }
        }
    }
    values
}

fn votes_from(c: &Cluster, id: NodeId) -> usize {
    let prefix = format!("{id} -> ");
    c.trace
        .iter()
        .filter(|t| t.starts_with(&prefix))
        .filter(|t| {
            t.ends_with(": Promise") || t.ends_with(": Accepted") || t.ends_with(": HeartbeatReply")
        })
        .count()
}

#[test]
fn a_replica_that_lost_its_tail_votes_only_after_it_recovered_from_peers() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=20 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    let f = other(&c, &[l]);
    lose_tail(&mut c, f, 1);
    restart_recovering(&mut c, f);
    assert!(matches!(
        c.engines[&f].status().recovery,
        Some(RecoveryPhase::Quiet { .. })
    ));
    c.trace.clear();
    // The quiet period: campaigns that may hold a forgotten promise must end first.
    c.tick_all(150);
    assert!(matches!(
        c.engines[&f].status().recovery,
        Some(RecoveryPhase::Quiet { .. })
    ));
    assert_eq!(votes_from(&c, f), 0, "no vote while quiet: {:?}", c.trace);
    c.tick_all(1_000);
    let status = c.engines[&f].status();
    assert_eq!(status.recovery, None, "recovered");
    assert!(status.promised >= c.engines[&l].status().promised);
    let expected: Vec<(u64, u64)> = (1..=20).map(|s| (1, s)).collect();
    assert_eq!(c.applied_commands(f), expected);
    // And it votes again: the cluster commits with it and the leader alone.
    let third = other(&c, &[l, f]);
    c.crash(third);
    c.engine(l).propose(cmd(2, 1)).unwrap();
    c.settle();
    c.tick_all(20);
    assert_eq!(c.applied_commands(f).last(), Some(&(2, 1)));
}

#[test]
fn a_recovering_replica_without_a_quorum_of_others_waits() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.engine(l).propose(cmd(1, 1)).unwrap();
    c.settle();
    let f = other(&c, &[l]);
    let third = other(&c, &[l, f]);
    lose_tail(&mut c, f, 1);
    c.crash(third);
    restart_recovering(&mut c, f);
    c.trace.clear();
    c.tick_all(5_000);
    assert!(matches!(
        c.engines[&f].status().recovery,
        Some(RecoveryPhase::Querying { answered: 1 })
    ));
    assert_eq!(votes_from(&c, f), 0, "never votes: {:?}", c.trace.len());
    // The member that was down comes back: now two others answer.
    c.start(third);
    c.tick_all(3_000);
    assert_eq!(c.engines[&f].status().recovery, None);
    assert_eq!(c.applied_commands(f), vec![(1, 1)]);
}

/// The unsafe interleaving: a value chosen by the leader and `f`; `f` forgets its acceptance
/// and promise; the leader goes down; the third node, which never saw the value, campaigns.
/// Returns the values delivered for the slot that held it.
fn forgotten_acceptance_then_new_leader(recover: bool) -> Vec<Value> {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f = other(&c, &[l]);
    let third = other(&c, &[l, f]);
    c.cut.insert((l, third));
    c.cut.insert((third, l));
    c.engine(l).propose(cmd(7, 1)).unwrap();
    c.settle();
    let slot = c.engines[&l].status().commit;
    assert_eq!(c.applied_commands(l), vec![(7, 1)], "chosen by {l} and {f}");
    lose_tail(&mut c, f, 1);
    c.crash(l);
    c.cut.clear();
    c.start(f);
    if recover {
        c.engine(f).start_peer_recovery();
    }
    c.tick_all(3_000);
    if recover {
        assert_eq!(
            c.leader(),
            None,
            "without the old leader no quorum can form"
        );
        c.start(l);
        c.tick_all(5_000);
        assert_eq!(c.engines[&f].status().recovery, None);
    }
    let newest = c.leader().expect("a leader");
    c.engine(newest).propose(cmd(8, 1)).unwrap();
    c.settle();
    c.tick_all(50);
    values_at(&c, slot)
}

#[test]
fn without_recovery_a_forgotten_acceptance_lets_a_second_value_be_chosen() {
    let values = forgotten_acceptance_then_new_leader(false);
    assert_eq!(values.len(), 2, "the scenario breaks safety: {values:?}");
}

#[test]
fn with_recovery_the_forgotten_acceptance_cannot_be_outvoted() {
    let values = forgotten_acceptance_then_new_leader(true);
    assert_eq!(values.len(), 1, "one value per slot: {values:?}");
}

#[test]
fn a_replica_that_lost_its_whole_log_recovers_from_the_peers_it_is_told_of() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=5 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    let f = other(&c, &[l]);
    lose_tail(&mut c, f, 0); // not even slot 1's membership is left
    restart_recovering(&mut c, f);
    c.tick_all(2_000);
    assert!(
        c.engines[&f].status().recovery.is_some(),
        "knows no one to ask"
    );
    c.engine(f).hint_recovery_peers([1, 2, 3]);
    c.tick_all(2_000);
    assert_eq!(c.engines[&f].status().recovery, None);
    let expected: Vec<(u64, u64)> = (1..=5).map(|s| (1, s)).collect();
    assert_eq!(c.applied_commands(f), expected);
}
