use super::cluster::{cmd, Cluster};
use crate::{Config, NodeId, ProposeError, ReadMode, Role};

#[test]
fn single_node_elects_itself_and_commits() {
    let mut c = Cluster::new(1);
    let l = c.elect();
    assert_eq!(l, 1);
    c.engine(1).propose(cmd(7, 1)).unwrap();
    c.settle();
    assert_eq!(c.applied_commands(1), vec![(7, 1)]);
}

#[test]
fn three_nodes_replicate_in_order() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=50 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
    }
    c.settle();
    c.tick_all(20); // heartbeats carry the final commit point to followers
    let expected: Vec<(u64, u64)> = (1..=50).map(|s| (1, s)).collect();
    for id in 1..=3 {
        assert_eq!(c.applied_commands(id), expected, "node {id}");
    }
}

#[test]
fn proposals_at_a_follower_are_forwarded() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    c.engine(f).propose(cmd(9, 1)).unwrap();
    c.settle();
    assert_eq!(c.applied_commands(f), vec![(9, 1)]);
    assert_eq!(c.applied_commands(l), vec![(9, 1)]);
}

#[test]
fn proposals_batch_into_slots() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let commit_before = c.engines[&l].status().commit;
    for seq in 1..=100 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
    }
    c.settle();
    assert_eq!(
        c.engines[&l].status().commit,
        commit_before + 1,
        "100 commands, one slot"
    );
}

#[test]
fn no_leader_means_proposals_fail_fast() {
    let mut c = Cluster::new(3);
    assert_eq!(c.engine(1).propose(cmd(1, 1)), Err(ProposeError::NoLeader));
}

#[test]
fn new_leader_after_crash_keeps_committed_entries() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=10 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.crash(l);
    let l2 = c.elect();
    assert_ne!(l, l2);
    c.engine(l2).propose(cmd(2, 1)).unwrap();
    c.settle();
    let mut expected: Vec<(u64, u64)> = (1..=10).map(|s| (1, s)).collect();
    expected.push((2, 1));
    assert_eq!(c.applied_commands(l2), expected);
    // The old leader restarts from its disk and catches up.
    c.start(l);
    c.tick_all(300);
    assert_eq!(c.applied_commands(l), expected);
}

#[test]
fn quorum_read_needs_a_round_trip_and_lease_read_does_not() {
    fn quorum(id: NodeId) -> Config {
        Config {
            read_mode: ReadMode::Quorum,
            ..Config::new(id)
        }
    }
    let mut c = Cluster::with_config(3, quorum);
    let l = c.elect();
    c.trace.clear();
    c.engine(l).read_barrier(42);
    c.settle();
    assert_eq!(c.reads_ready[&l], vec![42]);
    assert!(
        c.messages_of_kind("Heartbeat") >= 2,
        "a quorum round was sent"
    );

    let mut c = Cluster::new(3); // lease mode
    let l = c.elect();
    c.tick_all(20); // a confirmed round grants the lease
    assert!(c.engines[&l].status().lease_held);
    c.trace.clear();
    c.engine(l).read_barrier(43);
    c.settle();
    assert_eq!(c.reads_ready[&l], vec![43]);
    assert!(
        c.trace.is_empty(),
        "a lease read sends nothing: {:?}",
        c.trace
    );
}

#[test]
fn follower_read_goes_through_the_leader() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    c.engine(l).propose(cmd(1, 1)).unwrap();
    c.settle();
    c.engine(f).read_barrier(5);
    c.settle();
    assert_eq!(c.reads_ready[&f], vec![5]);
    assert_eq!(
        c.applied_commands(f),
        vec![(1, 1)],
        "served only after applying the write"
    );
}

#[test]
fn follower_reads_arriving_together_share_one_read_index_request() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    c.engine(l).propose(cmd(1, 1)).unwrap();
    c.settle();
    c.trace.clear();
    // Three reads before the follower's output is taken: one request carries them all.
    for id in 7..10 {
        c.engine(f).read_barrier(id);
    }
    c.settle();
    assert_eq!(c.reads_ready[&f], vec![7, 8, 9]);
    assert_eq!(c.messages_of_kind("ReadIndex"), 1, "{:?}", c.trace);
    // A read after that output was taken needs a request of its own: the leader must pick
    // its read point after the read began.
    c.engine(f).read_barrier(10);
    let _ = c.engine(f).ready();
    c.engine(f).read_barrier(11);
    let ready = c.engine(f).ready();
    let requests = ready
        .messages
        .iter()
        .filter(|m| matches!(m.body, crate::Body::ReadIndex { .. }))
        .count();
    assert_eq!(requests, 1, "the second read sent a request of its own");
}

#[test]
fn isolated_leader_steps_down_and_cut_off_node_does_not_disrupt() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for other in 1..=3 {
        if other != l {
            c.cut.insert((l, other));
            c.cut.insert((other, l));
        }
    }
    c.tick_all(400);
    assert_ne!(c.engines[&l].status().role, Role::Leader, "check-quorum");
    let l2 = c.leader().unwrap();
    assert_ne!(l2, l);
    let promised = c.engines[&l2].status().promised;
    // Heal: the old leader hears the new one and follows; no new election happens.
    c.cut.clear();
    c.tick_all(400);
    assert_eq!(c.leader(), Some(l2));
    assert_eq!(c.engines[&l2].status().promised, promised, "no disruption");
    assert_eq!(c.engines[&l].status().leader, Some(l2));
}

#[test]
fn restarted_acceptor_keeps_its_promise() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let promised = c.engines[&l].status().promised;
    for id in 1..=3 {
        c.crash(id);
        c.start(id);
        assert!(c.engines[&id].status().promised >= promised);
    }
    let l2 = c.elect();
    assert!(c.engines[&l2].status().promised > promised);
}

#[test]
fn a_lagging_follower_catches_up_from_a_snapshot() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    let other: NodeId = 6 - l - f;
    for peer in [l, other] {
        c.cut.insert((f, peer));
        c.cut.insert((peer, f));
    }
    for seq in 1..=40 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    let upto = c.compact(l);
    c.compact(other);
    assert!(
        upto >= 40,
        "the leader applied everything before compacting"
    );
    assert_eq!(c.engines[&l].status().compacted, upto);
    c.cut.clear();
    c.tick_all(30);
    assert!(
        c.snapshots_sent >= 1,
        "the lagging follower needed the snapshot"
    );
    let expected: Vec<(u64, u64)> = (1..=40).map(|s| (1, s)).collect();
    assert_eq!(c.applied_commands(f), expected);
    // And it keeps up afterwards, from the log.
    c.engine(l).propose(cmd(1, 41)).unwrap();
    c.settle();
    c.tick_all(20);
    assert_eq!(c.applied_commands(f).last(), Some(&(1, 41)));
    assert_eq!(c.engines[&f].status().compacted, upto);
}

#[test]
fn a_replica_restarts_from_its_snapshot_and_log_suffix() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=20 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    let f: NodeId = if l == 1 { 2 } else { 1 };
    let upto = c.compact(f);
    for seq in 21..=30 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    c.crash(f);
    c.start(f);
    c.tick_all(30);
    assert_eq!(c.engines[&f].status().compacted, upto);
    let expected: Vec<(u64, u64)> = (1..=30).map(|s| (1, s)).collect();
    assert_eq!(c.applied_commands(f), expected);
}

#[test]
fn a_candidate_behind_every_snapshot_cannot_lead() {
    // Two replicas compact past what the third has; with the leader gone, the lagging one
    // must not win an election it cannot complete, and the up-to-date one must.
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    let other: NodeId = 6 - l - f;
    for peer in [l, other] {
        c.cut.insert((f, peer));
        c.cut.insert((peer, f));
    }
    for seq in 1..=10 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    c.compact(l);
    c.compact(other);
    c.crash(l);
    c.cut.clear();
    c.tick_all(600);
    let new_leader = c.leader().expect("a leader is elected");
    assert_eq!(
        new_leader, other,
        "only the replica holding the history can lead"
    );
    c.engine(new_leader).propose(cmd(2, 1)).unwrap();
    c.settle();
    c.tick_all(20);
    let expected: Vec<(u64, u64)> = (1..=10).map(|s| (1, s)).chain([(2, 1)]).collect();
    assert_eq!(c.applied_commands(f), expected);
}

#[test]
fn an_acceptor_gives_no_promise_for_slots_it_compacted() {
    use crate::{Ballot, Body, Message};
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=5 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    let a: NodeId = if l == 1 { 2 } else { 1 };
    let upto = c.compact(a);
    c.crash(l);
    // Long enough that `a` no longer hears a leader.
    for _ in 0..300 {
        c.engine(a).tick();
    }
    let stranger: NodeId = 6 - l - a;
    let ballot = Ballot::new(1_000, stranger);
    let promised_before = c.engines[&a].status().promised;
    c.engine(a).step(Message {
        from: stranger,
        to: a,
        body: Body::Prepare {
            ballot,
            first_slot: upto,
            transfer_from: None,
        },
    });
    let ready = c.engine(a).ready();
    let promises = ready
        .messages
        .iter()
        .chain(&ready.messages_after_persist)
        .filter(|m| matches!(m.body, Body::Promise { .. }))
        .count();
    assert_eq!(promises, 0, "no promise without the compacted values");
    assert_eq!(c.engines[&a].status().promised, promised_before);
}

#[test]
fn a_restarted_follower_behind_the_compaction_point_gets_a_snapshot() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f: NodeId = if l == 1 { 2 } else { 1 };
    let other: NodeId = 6 - l - f;
    c.crash(f);
    for seq in 1..=40 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    c.compact(l);
    c.compact(other);
    c.start(f);
    c.tick_all(30);
    assert!(
        c.snapshots_sent >= 1,
        "{:?}",
        &c.trace[c.trace.len().saturating_sub(30)..]
    );
    let expected: Vec<(u64, u64)> = (1..=40).map(|s| (1, s)).collect();
    assert_eq!(c.applied_commands(f), expected);
}
