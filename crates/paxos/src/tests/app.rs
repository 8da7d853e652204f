//! Application messages (`Engine::send_app`, `Ready::app_messages`) and
//! `Engine::leader_ballot`.

use super::cluster::{cmd, Cluster};
use crate::{AppError, AppMessage, Ballot, Body, Message, NodeId, Role, APP_DATA_BYTES_MAX};
use bytes::Bytes;

fn app(from: NodeId, data: &'static [u8]) -> AppMessage {
    AppMessage {
        from,
        data: Bytes::from_static(data),
    }
}

fn received(c: &Cluster, id: NodeId) -> Vec<AppMessage> {
    c.app_received.get(&id).cloned().unwrap_or_default()
}

#[test]
fn app_messages_reach_only_the_named_replica_leader_or_not() {
    let mut c = Cluster::new(3);
    // No leader is needed: the engine only carries them.
    c.engine(1)
        .send_app(3, Bytes::from_static(b"early"))
        .unwrap();
    c.settle();
    assert_eq!(received(&c, 3), vec![app(1, b"early")]);
    assert!(received(&c, 1).is_empty() && received(&c, 2).is_empty());

    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.engine(f).send_app(l, Bytes::from_static(b"one")).unwrap();
    c.engine(f).send_app(l, Bytes::from_static(b"two")).unwrap();
    c.engine(l).send_app(f, Bytes::new()).unwrap();
    c.settle();
    let at_leader: Vec<AppMessage> = received(&c, l)
        .into_iter()
        .filter(|m| m.from == f)
        .collect();
    assert_eq!(at_leader, vec![app(f, b"one"), app(f, b"two")], "in order");
    assert!(received(&c, f).contains(&app(l, b"")));
    assert_eq!(c.messages_of_kind("App"), 4);
}

#[test]
fn an_app_message_to_itself_comes_back_in_its_own_ready() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    c.engine(l).send_app(l, Bytes::from_static(b"me")).unwrap();
    assert!(c.engines[&l].has_ready());
    let ready = c.engine(l).ready();
    assert_eq!(ready.app_messages, vec![app(l, b"me")]);
    assert!(
        ready
            .messages
            .iter()
            .all(|m| !matches!(m.body, Body::App { .. })),
        "nothing goes on the wire"
    );
}

#[test]
fn app_data_over_the_bound_is_refused_and_never_sent() {
    let mut c = Cluster::new(3);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let over = Bytes::from(vec![7u8; APP_DATA_BYTES_MAX + 1]);
    assert_eq!(
        c.engine(f).send_app(l, over.clone()),
        Err(AppError::TooLarge {
            bytes: APP_DATA_BYTES_MAX + 1
        })
    );
    c.settle();
    assert_eq!(c.messages_of_kind("App"), 0);
    // One built by hand and stepped directly (no codec on the way) is dropped, not delivered.
    c.engine(l).step(Message {
        from: f,
        to: l,
        body: Body::App { data: over },
    });
    c.settle();
    assert!(received(&c, l).is_empty());
    // Exactly at the bound is fine.
    let full = Bytes::from(vec![7u8; APP_DATA_BYTES_MAX]);
    c.engine(f).send_app(l, full.clone()).unwrap();
    c.settle();
    assert_eq!(
        received(&c, l),
        vec![AppMessage {
            from: f,
            data: full
        }]
    );
}

/// Checks, for every live replica, that `leader_ballot` is `Some` exactly while it leads,
/// with a ballot of its own that its acceptor has promised, and records each tenure.
fn check_ballots(c: &Cluster, tenures: &mut Vec<(NodeId, Ballot)>) {
    for (&id, e) in &c.engines {
        let ballot = e.leader_ballot();
        assert_eq!(ballot.is_some(), e.role() == Role::Leader, "node {id}");
        if let Some(b) = ballot {
            assert_eq!(b.node, id, "a leader leads with its own ballot");
            assert!(b <= e.status().promised);
            if !tenures.contains(&(id, b)) {
                tenures.push((id, b));
            }
        }
    }
}

fn tick_checking(c: &mut Cluster, ticks: u64, tenures: &mut Vec<(NodeId, Ballot)>) {
    for _ in 0..ticks {
        c.tick_all(1);
        check_ballots(c, tenures);
    }
}

fn leader_after(c: &mut Cluster, tenures: &mut Vec<(NodeId, Ballot)>) -> NodeId {
    for _ in 0..2_000 {
        tick_checking(c, 1, tenures);
        if let Some(l) = c.leader() {
            if c.engines
                .values()
                .filter(|e| e.role() == Role::Leader)
                .count()
                == 1
            {
                return l;
            }
        }
    }
    panic!("no single leader");
}

#[test]
fn leader_ballot_names_each_tenure_across_elections() {
    let mut c = Cluster::new(3);
    let mut tenures = Vec::new();
    check_ballots(&c, &mut tenures);
    assert!(tenures.is_empty(), "nobody leads before an election");

    // 1. First election.
    let l1 = leader_after(&mut c, &mut tenures);
    let b1 = c.engines[&l1].leader_ballot().unwrap();
    c.engine(l1).propose(cmd(1, 1)).unwrap();
    tick_checking(&mut c, 50, &mut tenures);
    assert_eq!(
        c.engines[&l1].leader_ballot(),
        Some(b1),
        "one ballot per tenure"
    );

    // 2. The leader crashes; the next one leads with a higher ballot, and the old one,
    // restarted, follows with none.
    c.crash(l1);
    let l2 = leader_after(&mut c, &mut tenures);
    let b2 = c.engines[&l2].leader_ballot().unwrap();
    assert!(l2 != l1 && b2 > b1);
    c.start(l1);
    tick_checking(&mut c, 300, &mut tenures);
    assert_eq!(c.engines[&l1].leader_ballot(), None);
    assert_eq!(c.engines[&l2].leader_ballot(), Some(b2));

    // 3. The leader is cut off: it steps down (check-quorum) and loses its ballot; another
    // takes over with a higher one.
    for other in 1..=3 {
        if other != l2 {
            c.cut.insert((l2, other));
            c.cut.insert((other, l2));
        }
    }
    tick_checking(&mut c, 400, &mut tenures);
    assert_eq!(c.engines[&l2].leader_ballot(), None);
    let l3 = c.leader().unwrap();
    let b3 = c.engines[&l3].leader_ballot().unwrap();
    assert!(l3 != l2 && b3 > b2);
    c.cut.clear();
    tick_checking(&mut c, 300, &mut tenures);
    // A write, so every acceptor has promised the leader's ballot: a hand-over goes only to
    // a replica that did (`on_timeout_now`), and the healed one has only heard heartbeats.
    c.engine(l3).propose(cmd(1, 2)).unwrap();
    tick_checking(&mut c, 10, &mut tenures);

    // 4. A hand-over: the old leader's ballot goes, the new one's is higher.
    let to = (1..=3).find(|&n| n != l3).unwrap();
    c.engine(l3).transfer_leadership(to).unwrap();
    tick_checking(&mut c, 300, &mut tenures);
    assert_eq!(c.engines[&l3].leader_ballot(), None);
    let b4 = c.engines[&to].leader_ballot().expect("the target leads");
    assert!(b4 > b3);

    // Every tenure seen, in the order it began, had a higher ballot than the one before.
    let ballots: Vec<Ballot> = tenures.iter().map(|&(_, b)| b).collect();
    assert_eq!(ballots, vec![b1, b2, b3, b4]);
}

#[test]
fn leader_ballot_is_none_while_campaigning() {
    let mut c = Cluster::new(3);
    let mut tenures = Vec::new();
    let l = leader_after(&mut c, &mut tenures);
    c.engine(l).propose(cmd(1, 1)).unwrap();
    tick_checking(&mut c, 10, &mut tenures);
    // A hand-over to a replica whose Prepares reach no one (the leader already knows it is
    // caught up): it stays a candidate, phase 1 under its own ballot, and the old leader
    // has stepped down.
    let to = (1..=3).find(|&n| n != l).unwrap();
    for other in (1..=3).filter(|&n| n != to) {
        c.cut.insert((to, other));
    }
    c.engine(l).transfer_leadership(to).unwrap();
    tick_checking(&mut c, 3, &mut tenures);
    assert_eq!(c.engines[&to].role(), Role::Candidate);
    assert_eq!(c.engines[&to].leader_ballot(), None);
    assert_eq!(c.engines[&l].leader_ballot(), None);
    // Alone, a replica asks for pre-votes in vain: still no ballot to lead with.
    c.cut.clear();
    let alone = l;
    for other in (1..=3).filter(|&n| n != alone) {
        c.crash(other);
    }
    let mut campaigning = 0;
    for _ in 0..400 {
        tick_checking(&mut c, 1, &mut tenures);
        if c.engines[&alone].role() == Role::PreCandidate {
            campaigning += 1;
            assert_eq!(c.engines[&alone].leader_ballot(), None);
        }
    }
    assert!(campaigning > 0, "it never asked for pre-votes");
    assert_eq!(tenures.len(), 1, "{tenures:?}");
}
