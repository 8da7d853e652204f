//! Membership changes and leadership hand-over on the test cluster.

use super::cluster::{cmd, Cluster};
use crate::{Membership, NodeId, ProposeError, Role, TransferError, MEMBERSHIP_DELAY_SLOTS};
use bytes::Bytes;

fn members(voters: &[NodeId], learners: &[NodeId]) -> Membership {
    Membership::with_learners(
        voters.iter().copied(),
        learners.iter().copied(),
        Bytes::new(),
    )
    .unwrap()
}

/// Proposes `m` at the leader and runs until every running replica has it in force.
fn change(c: &mut Cluster, m: Membership) {
    let l = c.leader().expect("a leader");
    c.engine(l).propose_membership(m.clone()).unwrap();
    for _ in 0..500 {
        c.tick_all(1);
        let done = c.engines.values().all(|e| {
            let s = e.status();
            s.members.as_ref() == Some(&m) && s.commit > MEMBERSHIP_DELAY_SLOTS
        });
        if done {
            return;
        }
    }
    panic!("membership {m:?} did not take force");
}

fn write_and_check(c: &mut Cluster, client: u64, seq: u64) {
    let l = c.leader().expect("a leader");
    c.engine(l).propose(cmd(client, seq)).unwrap();
    c.tick_all(30);
    let m = c.engines[&l].status().members.unwrap();
    for (&id, _) in c.engines.iter().filter(|(&id, _)| m.is_member(id)) {
        assert!(
            c.applied_commands(id).contains(&(client, seq)),
            "node {id} misses ({client}, {seq})"
        );
    }
}

#[test]
fn a_learner_joins_catches_up_and_is_promoted_then_votes() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=20 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
    }
    c.settle();
    c.join(4);
    change(&mut c, members(&[1, 2, 3], &[4]));
    assert_eq!(
        c.applied_commands(4),
        c.applied_commands(l),
        "learner caught up"
    );
    assert_eq!(c.engines[&4].status().role, Role::Follower);
    change(&mut c, members(&[1, 2, 3, 4], &[]));
    // With four voters a quorum is three: the new voter's vote is needed once two of the
    // old ones are gone... one down is fine.
    let down: NodeId = (1..=3).find(|&n| n != l).unwrap();
    c.crash(down);
    write_and_check(&mut c, 2, 1);
    // Two down (one of them old) leaves the leader and node 4 only: no quorum of four.
    let other: NodeId = (1..=3).find(|&n| n != l && n != down).unwrap();
    c.crash(other);
    let before = c.engines[&l].status().commit;
    c.engine(l).propose(cmd(3, 1)).unwrap();
    c.tick_all(5);
    assert_eq!(
        c.engines[&l].status().commit,
        before,
        "two of four is no quorum"
    );
}

#[test]
fn one_change_at_a_time() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.join(4);
    c.engine(l)
        .propose_membership(members(&[1, 2, 3], &[4]))
        .unwrap();
    assert_eq!(
        c.engine(l).propose_membership(members(&[1, 2, 3, 4], &[])),
        Err(ProposeError::MembershipChanging)
    );
    let f: NodeId = (1..=3).find(|&n| n != l).unwrap();
    assert_eq!(
        c.engine(f).propose_membership(members(&[1, 2], &[])),
        Err(ProposeError::NotLeader)
    );
    c.tick_all(20);
    // In force (the leader filled the gap with no-ops): the next change is welcome.
    c.engine(l)
        .propose_membership(members(&[1, 2, 3, 4], &[]))
        .unwrap();
}

#[test]
fn removing_the_leader_hands_over_and_it_never_campaigns_again() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    write_and_check(&mut c, 1, 1);
    let rest: Vec<NodeId> = (1..=3).filter(|&n| n != l).collect();
    let l_promised = c.engines[&l].status().promised;
    c.engine(l).propose_membership(members(&rest, &[])).unwrap();
    // Well within one election timeout (100 ticks) of the change taking force.
    let mut new_leader = None;
    for _ in 0..60 {
        c.tick_all(1);
        if let Some(n) = c.leader().filter(|n| rest.contains(n)) {
            new_leader = Some(n);
            break;
        }
    }
    let n = new_leader.expect("the removed leader handed over");
    assert!(c.engines[&n].status().promised > l_promised);
    c.tick_all(10);
    write_and_check(&mut c, 1, 2);
    // The removed node never campaigns, even alone for long.
    for &r in &rest {
        c.crash(r);
    }
    c.tick_all(1_000);
    assert_ne!(c.engines[&l].status().role, Role::Leader);
    assert_ne!(c.engines[&l].status().role, Role::Candidate);
}

#[test]
fn leadership_moves_on_request_without_an_election_timeout() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    write_and_check(&mut c, 1, 1);
    let to: NodeId = (1..=3).find(|&n| n != l).unwrap();
    assert_eq!(
        c.engine(to).transfer_leadership(l),
        Err(TransferError::NotLeader)
    );
    assert_eq!(
        c.engine(l).transfer_leadership(9),
        Err(TransferError::NotAVoter)
    );
    c.engine(l).transfer_leadership(to).unwrap();
    c.tick_all(3);
    assert_eq!(c.leader(), Some(to), "the target leads within a few ticks");
    write_and_check(&mut c, 1, 2);
}

#[test]
fn a_new_member_behind_the_compaction_point_gets_a_snapshot() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    for seq in 1..=10 {
        c.engine(l).propose(cmd(1, seq)).unwrap();
        c.settle();
    }
    c.tick_all(20);
    for id in 1..=3 {
        c.compact(id);
    }
    c.join(4);
    change(&mut c, members(&[1, 2, 3], &[4]));
    assert!(c.snapshots_sent > 0, "the joiner needed a snapshot");
    assert_eq!(c.applied_commands(4), c.applied_commands(l));
    // The joiner restarts from its snapshot and still knows the membership.
    c.crash(4);
    c.start(4);
    c.tick_all(30);
    assert_eq!(
        c.engines[&4].status().members,
        Some(members(&[1, 2, 3], &[4]))
    );
}
