//! Lock and Unlock.

use super::*;

#[test]
fn an_uncontended_lock_is_one_txn_answered_with_its_revision() {
    let mut w = World::new();
    let lease = w.grant(0x1234abcd);
    let (_, run) = w.lock("mylock", lease);
    let locked = done(run).unwrap();
    assert_eq!(locked.key, "mylock/1234abcd");
    assert_eq!(locked.revision, 2);
    let kv = w.get(b"mylock/1234abcd").unwrap();
    assert_eq!((kv.lease, kv.create_revision), (lease, 2));
    assert!(kv.value.is_empty());
}

#[test]
fn a_negative_lease_id_prints_as_go_does() {
    let mut w = World::new();
    let lease = w.grant(-0x2a);
    let (_, run) = w.lock("neg", lease);
    assert_eq!(done(run).unwrap().key, "neg/-2a");
}

#[test]
fn locking_again_with_the_same_lease_writes_nothing() {
    let mut w = World::new();
    let lease = w.grant(7);
    done(w.lock("job", lease).1).unwrap();
    w.put("other", "x");
    let again = done(w.lock("job", lease).1).unwrap();
    assert_eq!(again.key, "job/7");
    assert_eq!(
        again.revision, 3,
        "the current revision: the txn wrote nothing"
    );
    assert_eq!(w.store.revision(), 3);
}

#[test]
fn a_second_locker_waits_for_the_first_ones_delete() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    let first = done(w.lock("job", a).1).unwrap();
    let (mut second, run) = w.lock("job", b);
    assert_eq!(blocked_on(&run), first.key);
    // Other writes, even to the holder's key, do not wake it.
    w.apply(&Request::Put(PutRequest {
        lease: a,
        ..PutRequest::new(first.key.clone(), "v")
    }))
    .unwrap();
    let run = w.resume(&mut second, run);
    assert_eq!(blocked_on(&run), first.key);
    let unlocked = w.delete(&first.key);
    let got = done(w.resume(&mut second, run)).unwrap();
    assert_eq!(got.key, "job/2");
    assert_eq!(
        got.revision, unlocked,
        "the header of the read after the delete"
    );
}

#[test]
fn each_waiter_waits_on_the_next_older_key() {
    let mut w = World::new();
    let (a, b, c) = (w.grant(0xa), w.grant(0xb), w.grant(0xc));
    let held = done(w.lock("q", a).1).unwrap();
    let (lb, rb) = w.lock("q", b);
    let (mut lc, rc) = w.lock("q", c);
    assert_eq!(blocked_on(&rb), "q/a");
    assert_eq!(blocked_on(&rc), "q/b");
    // The middle waiter gives up: its key goes, and the last one moves on to the holder.
    let cleanup = lb
        .abort()
        .expect("a waiting lock deletes its key when abandoned");
    w.apply(&cleanup).unwrap();
    let rc = w.resume(&mut lc, rc);
    assert_eq!(blocked_on(&rc), "q/a");
    w.delete(&held.key);
    assert_eq!(done(w.resume(&mut lc, rc)).unwrap().key, "q/c");
    // The abandoned machine is not driven again; its key is gone.
    assert!(w.get(b"q/b").is_none());
}

#[test]
fn a_revoked_holder_loses_the_lock_to_the_waiter() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    done(w.lock("job", a).1).unwrap();
    let (mut second, run) = w.lock("job", b);
    w.revoke(a);
    let got = done(w.resume(&mut second, run)).unwrap();
    assert_eq!(got.key, "job/2");
    assert_eq!(got.revision, w.store.revision());
}

#[test]
fn a_waiter_whose_own_lease_ends_is_told_its_session_expired() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    let held = done(w.lock("job", a).1).unwrap();
    let (mut second, run) = w.lock("job", b);
    w.revoke(b);
    w.delete(&held.key);
    let outcome = done(w.resume(&mut second, run));
    assert_eq!(outcome, Err(RecipeError::SessionExpired));
    assert_eq!(
        outcome.unwrap_err().to_string(),
        "mutex: session is expired"
    );
}

#[test]
fn lease_zero_grants_a_session_lease_first() {
    let mut w = World::new();
    let (lock, step) = Lock::<KvError>::start(b"job", 0);
    assert_eq!(step, Step::Grant { ttl: SESSION_TTL });
    drop(lock);
    let (_, run) = w.lock("job", 0);
    let locked = done(run).unwrap();
    assert_eq!(locked.key, "job/2a");
    assert_eq!(w.get(b"job/2a").unwrap().lease, 0x2a);
}

#[test]
fn an_unknown_lease_fails_with_the_stores_error_and_deletes_nothing() {
    let mut w = World::new();
    let (lock, run) = w.lock("job", 99);
    assert_eq!(done(run), Err(RecipeError::Request(KvError::LeaseNotFound)));
    assert_eq!(lock.abort(), None);
}

#[test]
fn a_failed_wait_deletes_the_key_then_answers_the_failure() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    done(w.lock("job", a).1).unwrap();
    let (mut second, run) = w.lock("job", b);
    blocked_on(&run);
    let Progress::Next(Step::Write(cleanup)) = second.next(Err(KvError::Compacted)) else {
        panic!("a failed wait deletes the key first");
    };
    assert_eq!(cleanup, unlock_request(Bytes::from_static(b"job/2")));
    assert_eq!(
        second.abort(),
        Some(cleanup.clone()),
        "given up now, it still deletes"
    );
    let reply = w.apply(&cleanup).map(Reply::Kv);
    assert_eq!(
        second.next(reply),
        Progress::Done(Err(RecipeError::Request(KvError::Compacted)))
    );
    assert!(w.get(b"job/2").is_none());
}

#[test]
fn only_a_queued_lock_cleans_up_when_abandoned() {
    let (lock, _) = Lock::<KvError>::start(b"job", 5);
    assert_eq!(lock.abort(), None, "the txn may not have run");
    let mut w = World::new();
    let lease = w.grant(5);
    let (held, run) = w.lock("job", lease);
    done(run).unwrap();
    assert_eq!(held.abort(), None, "a held lock is the caller's to unlock");
}

#[test]
fn a_wrong_reply_is_an_error_not_a_panic() {
    let (mut lock, _) = Lock::<KvError>::start(b"job", 5);
    let progress = lock.next(Ok(Reply::Deleted));
    assert!(matches!(
        progress,
        Progress::Done(Err(RecipeError::Unexpected(_)))
    ));
    assert!(matches!(
        lock.next(Ok(Reply::Deleted)),
        Progress::Done(Err(RecipeError::Unexpected(_)))
    ));
}
