//! The LeaseSafety checker on handmade histories.

use crate::lease_check::{quiet_bound_us, LeaseCheck};
use synod_kv::LeaseEpoch;

const UNIT: u64 = 10_000;

fn epoch(round: u64, node: u64) -> LeaseEpoch {
    LeaseEpoch { round, node }
}

#[test]
fn an_expiry_after_the_ttl_of_the_last_keep_alive_is_fine() {
    let mut c = LeaseCheck::new(UNIT);
    c.sent(1, 1_000);
    c.acknowledged(1, 1_000, 5).unwrap();
    c.sent(1, 20_000);
    c.acknowledged(1, 20_000, 5).unwrap();
    c.expiry_proposed(1, epoch(3, 1), 70_000);
    assert!(c.expired(1, &[epoch(3, 1)]).is_ok());
}

#[test]
fn an_expiry_proposed_before_the_ttl_of_an_acknowledged_keep_alive_fails() {
    let mut c = LeaseCheck::new(UNIT);
    c.acknowledged(1, 1_000, 5).unwrap();
    c.acknowledged(1, 20_000, 5).unwrap();
    c.expiry_proposed(1, epoch(3, 1), 69_999);
    let e = c.expired(1, &[epoch(3, 1)]).unwrap_err();
    assert!(e.contains("lease 1"), "{e}");
}

#[test]
fn the_earliest_proposal_of_the_epoch_counts_and_other_epochs_do_not() {
    let mut c = LeaseCheck::new(UNIT);
    c.acknowledged(1, 0, 5).unwrap();
    // A deposed leader's early expiry (epoch 2) takes no effect: irrelevant.
    c.expiry_proposed(1, epoch(2, 2), 10_000);
    c.expiry_proposed(1, epoch(3, 1), 49_000);
    c.expiry_proposed(1, epoch(3, 1), 90_000); // a retry of the same decision
    assert!(c.expired(1, &[epoch(3, 1)]).is_err());
}

#[test]
fn an_acknowledgement_heard_after_the_expiry_is_checked_too() {
    let mut c = LeaseCheck::new(UNIT);
    c.acknowledged(1, 0, 5).unwrap();
    c.expiry_proposed(1, epoch(1, 1), 60_000);
    c.expired(1, &[epoch(1, 1)]).unwrap();
    // Sent at 5 ms and acknowledged: the lease had to live until 55 ms. Fine.
    assert!(c.acknowledged(1, 5_000, 5).is_ok());
    // Sent at 15 ms: it had to live until 65 ms, but was expired as of 60 ms.
    assert!(c.acknowledged(1, 15_000, 5).is_err());
    // TTL 0 says the lease is gone: no promise.
    assert!(c.acknowledged(1, 50_000, 0).is_ok());
}

#[test]
fn an_expiry_nobody_proposed_fails_and_client_revokes_promise_nothing() {
    let mut c = LeaseCheck::new(UNIT);
    c.acknowledged(1, 0, 5).unwrap();
    assert!(c.expired(1, &[epoch(1, 1)]).is_err());
    c.acknowledged(2, 0, 5).unwrap();
    c.client_revoked(2);
    assert!(c.acknowledged(2, 1_000, 5).is_ok());
}

#[test]
fn leases_left_alone_must_go_within_the_bound() {
    let mut c = LeaseCheck::new(UNIT);
    c.sent(1, 0);
    c.acknowledged(1, 0, 5).unwrap();
    c.sent(2, 0);
    c.acknowledged(2, 0, 5).unwrap();
    c.sent(2, 400_000); // still kept alive after the faults ended
    let bound = |ttl: i64| ttl as u64 * UNIT + 100_000;
    assert_eq!(c.overdue(250_000, 100_000, bound), Vec::<i64>::new());
    assert_eq!(c.overdue(250_001, 100_000, bound), vec![1]);
    assert_eq!(c.overdue(600_000, 100_000, bound), vec![1, 2]);
    c.expiry_proposed(1, epoch(1, 1), 200_000);
    c.expired(1, &[epoch(1, 1)]).unwrap();
    assert_eq!(c.overdue(600_000, 100_000, bound), vec![2]);
}

#[test]
fn the_quiet_bound_covers_a_slow_clock_and_a_new_leader() {
    // 5% drift: 100 ms of TTL last at most 100 * 1.05 / 0.95 ms.
    let b = quiet_bound_us(100_000, 50_000, 10_000, 20_000, 0);
    assert_eq!(b, 110_526 + 10_000 + 10_526 + 20_000);
}
