//! Campaign, Proclaim, Resign and Leader.

use super::*;

fn value_of(w: &World, key: &Bytes) -> Option<Bytes> {
    w.get(key).map(|kv| kv.value)
}

#[test]
fn an_uncontended_campaign_wins_at_its_txns_revision() {
    let mut w = World::new();
    let lease = w.grant(0x694d);
    let won = done(w.campaign("e", lease, "one").1).unwrap();
    let expected = LeaderKey {
        name: Bytes::from_static(b"e"),
        key: Bytes::from_static(b"e/694d"),
        rev: 2,
        lease,
    };
    assert_eq!(won.leader, expected);
    assert_eq!(won.revision, 2);
    let now = w.leader("e").unwrap();
    assert_eq!(
        (now.revision, now.kv.value),
        (2, Bytes::from_static(b"one"))
    );
}

#[test]
fn no_leader_without_a_key() {
    let mut w = World::new();
    w.put("e-other", "x");
    let outcome = w.leader("e");
    assert_eq!(outcome, Err(RecipeError::NoLeader));
    assert_eq!(outcome.unwrap_err().to_string(), "election: no leader");
}

#[test]
fn a_second_candidate_waits_for_the_leader_to_resign() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    let first = done(w.campaign("e", a, "A").1).unwrap();
    let (mut second, run) = w.campaign("e", b, "B");
    assert_eq!(blocked_on(&run), "e/1");
    assert_eq!(w.leader("e").unwrap().kv.value, "A");
    let resigned = w.resign(Some(first.leader)).unwrap();
    assert_eq!(resigned, 4, "the revision of the delete");
    let won = done(w.resume(&mut second, run)).unwrap();
    assert_eq!(won.leader.key, "e/2");
    assert_eq!(won.leader.rev, 3);
    assert_eq!(won.revision, 3, "the campaign txn's header, not the wait's");
    assert_eq!(w.leader("e").unwrap().kv.value, "B");
}

#[test]
fn a_revoked_leaders_successor_wins() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    done(w.campaign("e", a, "A").1).unwrap();
    let (mut second, run) = w.campaign("e", b, "B");
    w.revoke(a);
    assert_eq!(done(w.resume(&mut second, run)).unwrap().leader.key, "e/2");
}

#[test]
fn campaigning_again_with_a_new_value_proclaims_it() {
    let mut w = World::new();
    let lease = w.grant(1);
    done(w.campaign("e", lease, "old").1).unwrap();
    let again = done(w.campaign("e", lease, "new").1).unwrap();
    // etcd 3.5.30: the key's create revision, the header of the campaign txn (which wrote
    // nothing), though the proclaim wrote at the next revision.
    assert_eq!((again.leader.rev, again.revision), (2, 2));
    assert_eq!(w.store.revision(), 3);
    assert_eq!(value_of(&w, &again.leader.key).unwrap(), "new");
    // The same value again writes nothing.
    let same = done(w.campaign("e", lease, "new").1).unwrap();
    assert_eq!((same.leader.rev, same.revision), (2, 3));
    assert_eq!(w.store.revision(), 3);
}

#[test]
fn a_failed_proclaim_inside_a_campaign_resigns_and_fails() {
    let mut w = World::new();
    let lease = w.grant(1);
    done(w.campaign("e", lease, "old").1).unwrap();
    let (mut campaign, step) = Campaign::<KvError>::start(b"e", lease, Bytes::from("new"));
    let reply = w.serve(&step).unwrap();
    let Progress::Next(proclaim) = campaign.next(reply) else {
        panic!("a new value is proclaimed");
    };
    // Someone else deletes and recreates the key in between: it is not ours any more.
    w.delete(&Bytes::from_static(b"e/1"));
    w.put("e/1", "theirs");
    let reply = w.serve(&proclaim).unwrap();
    let Progress::Next(resign) = campaign.next(reply) else {
        panic!("a failed proclaim resigns");
    };
    let reply = w.serve(&resign).unwrap();
    assert_eq!(
        campaign.next(reply),
        Progress::Done(Err(RecipeError::NotLeader))
    );
    assert_eq!(value_of(&w, &Bytes::from_static(b"e/1")).unwrap(), "theirs");
}

#[test]
fn proclaim_needs_the_leaders_key_at_its_revision() {
    let mut w = World::new();
    let lease = w.grant(1);
    let won = done(w.campaign("e", lease, "v1").1).unwrap();
    let rev = w.proclaim(Some(won.leader.clone()), "v2").unwrap();
    assert_eq!(rev, 3);
    assert_eq!(value_of(&w, &won.leader.key).unwrap(), "v2");
    assert_eq!(w.get(&won.leader.key).unwrap().lease, lease);
    let wrong = LeaderKey {
        rev: 7,
        ..won.leader.clone()
    };
    let outcome = w.proclaim(Some(wrong), "v3");
    assert_eq!(outcome, Err(RecipeError::NotLeader));
    assert_eq!(outcome.unwrap_err().to_string(), "election: not leader");
    let missing = w.proclaim(None, "v3");
    assert_eq!(missing, Err(RecipeError::MissingLeader));
    assert_eq!(
        missing.unwrap_err().to_string(),
        "\"leader\" field must be provided"
    );
    w.resign(Some(won.leader.clone())).unwrap();
    assert_eq!(
        w.proclaim(Some(won.leader), "v4"),
        Err(RecipeError::NotLeader)
    );
}

#[test]
fn resign_never_fails_for_not_being_leader() {
    let mut w = World::new();
    let lease = w.grant(1);
    let won = done(w.campaign("e", lease, "v").1).unwrap();
    let wrong = LeaderKey {
        rev: 9,
        ..won.leader.clone()
    };
    assert_eq!(
        w.resign(Some(wrong)),
        Ok(2),
        "nothing deleted: the current revision"
    );
    assert!(w.get(&won.leader.key).is_some());
    assert_eq!(w.resign(Some(won.leader.clone())), Ok(3));
    assert_eq!(w.resign(Some(won.leader)), Ok(3), "already gone");
    assert_eq!(w.resign(None), Err(RecipeError::MissingLeader));
}

#[test]
fn lease_zero_grants_a_lease_for_campaign_proclaim_and_resign() {
    let mut w = World::new();
    let won = done(w.campaign("e", 0, "v").1).unwrap();
    assert_eq!(
        (won.leader.key.as_ref(), won.leader.lease),
        (&b"e/2a"[..], 0x2a)
    );
    // Proclaim naming lease 0 puts the value with a lease of its own, as etcd's session.
    let leaseless = LeaderKey {
        lease: 0,
        ..won.leader.clone()
    };
    w.proclaim(Some(leaseless.clone()), "w").unwrap();
    assert_eq!(w.get(&won.leader.key).unwrap().lease, 0x2b);
    w.resign(Some(leaseless)).unwrap();
    assert_eq!(w.next_lease, 0x2d, "resign granted one too");
    assert!(w.get(&won.leader.key).is_none());
}

#[test]
fn an_abandoned_campaign_resigns_only_while_waiting() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    let (first, run) = w.campaign("e", a, "A");
    done(run).unwrap();
    assert_eq!(
        first.abort(),
        None,
        "a won campaign is the caller's to resign"
    );
    let (second, run) = w.campaign("e", b, "B");
    blocked_on(&run);
    let cleanup = second.abort().expect("a waiting campaign resigns");
    w.apply(&cleanup).unwrap();
    assert!(w.get(b"e/2").is_none());
    // A failed wait does not resign (etcd resigns only for a cancelled one).
    let (mut third, run) = w.campaign("e", b, "B");
    blocked_on(&run);
    assert_eq!(
        third.next(Err(KvError::Compacted)),
        Progress::Done(Err(RecipeError::Request(KvError::Compacted)))
    );
    assert!(w.get(b"e/2").is_some());
}
