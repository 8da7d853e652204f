//! The lease flow through one replica that is a cluster of one: its epoch promotes it,
//! keep-alives renew after a read barrier, time-to-live counts down, an unrenewed lease is
//! expired through the log no sooner than its TTL. Many members, faults and forwarding are
//! the simulator's and the server tests' business.

use crate::{Answer, PersistJob, Replica, ReplicaConfig, ReplicaError, Restored, Unobserved};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use synod_kv::{encode_request, LeaseGrantRequest, PutRequest, Request};
use synod_paxos::{Config, DurableState, Membership, Role};

/// Collects the answer it is given.
#[derive(Debug, Clone, Default)]
struct Slot(Rc<RefCell<Option<Result<Answer, ReplicaError>>>>);

impl crate::Waiter for Slot {}

impl Slot {
    fn take(&self) -> Option<Result<Answer, ReplicaError>> {
        self.0.borrow_mut().take()
    }
}

const TICK: Duration = Duration::from_millis(1);
const LEASE_SECOND: Duration = Duration::from_millis(10);

struct One {
    replica: Replica<Slot>,
    now: Duration,
}

impl One {
    fn start() -> One {
        let mut engine = Config::new(1);
        engine.heartbeat_interval_ticks = 5;
        engine.election_timeout_ticks = 20;
        let cfg = ReplicaConfig {
            engine,
            tick: TICK,
            request_timeout: Duration::from_millis(500),
            snapshot_every_commands: u64::MAX,
            snapshot_chunk_bytes: 1 << 20,
            cluster_id: 1,
            member_id: 1,
            name: "one".into(),
            client_urls: Vec::new(),
            auto_compaction: None,
            incarnation: 1,
            lease_second: LEASE_SECOND,
            watch_progress_interval: Duration::from_secs(60),
            planted: crate::Planted::default(),
        };
        let durable = DurableState::bootstrap(&Membership::new([1]).unwrap());
        let replica =
            Replica::new(cfg, durable, Restored::default(), Box::new(Unobserved)).unwrap();
        let mut one = One {
            replica,
            now: Duration::ZERO,
        };
        while one.replica.engine().role() != Role::Leader {
            one.run(TICK);
        }
        one.run(TICK * 5); // the epoch is applied: promoted
        one
    }

    /// Runs turns for `d` of time, one per tick; the disk is instant and messages to
    /// itself come straight back.
    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.now += TICK;
            self.turn();
        }
    }

    fn turn(&mut self) {
        self.replica.advance(self.now);
        self.replica.check_timers(&|_| None);
        for _ in 0..10 {
            self.replica.end_turn(&|_| None);
            let fx = self.replica.effects();
            if fx.is_empty() {
                break;
            }
            let mut back = fx.messages;
            for job in fx.persist {
                if let PersistJob::Ready { seq, after, .. } = job {
                    back.extend(after);
                    if let Some(seq) = seq {
                        self.replica.persisted(seq);
                    }
                }
            }
            for m in back {
                self.replica.step_peer(m);
            }
            for (slot, answer) in fx.answers {
                *slot.0.borrow_mut() = Some(answer);
            }
        }
    }

    fn ask(&mut self, f: impl FnOnce(&mut Replica<Slot>, Slot)) -> Answer {
        let slot = Slot::default();
        f(&mut self.replica, slot.clone());
        for _ in 0..100 {
            if let Some(answer) = slot.take() {
                return answer.expect("answered without error");
            }
            self.run(TICK);
        }
        panic!("no answer");
    }

    fn write(&mut self, request: Request) -> Answer {
        self.ask(|r, w| r.write(encode_request(&request), w))
    }
}

#[test]
fn keep_alives_renew_and_an_unrenewed_lease_expires_after_its_ttl() {
    let mut one = One::start();
    one.write(Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 }));
    let mut put = PutRequest::new("k", "v");
    put.lease = 5;
    one.write(Request::Put(put));
    let granted_at = one.now;
    let renewed = one.ask(|r, w| r.lease_keep_alive(5, w));
    assert!(
        matches!(renewed, Answer::LeaseKeepAlive { id: 5, ttl: 10 }),
        "{renewed:?}"
    );
    let Answer::LeaseTimeToLive {
        ttl,
        granted_ttl,
        keys,
        ..
    } = one.ask(|r, w| r.lease_time_to_live(5, true, w))
    else {
        panic!("a time-to-live answer");
    };
    assert_eq!((granted_ttl, keys), (10, vec![bytes::Bytes::from("k")]));
    assert!((8..=10).contains(&ttl), "remaining {ttl}");
    // Kept alive for three TTLs: never expires.
    for _ in 0..15 {
        one.run(LEASE_SECOND * 2);
        one.ask(|r, w| r.lease_keep_alive(5, w));
    }
    assert_eq!(one.replica.kv().lease(5), Some(10));
    // Left alone: not gone before its TTL (with the drift margin), gone soon after.
    let last = one.now;
    one.run(LEASE_SECOND * 10);
    assert_eq!(
        one.replica.kv().lease(5),
        Some(10),
        "expired before its TTL"
    );
    one.run(LEASE_SECOND * 3);
    assert_eq!(
        one.replica.kv().lease(5),
        None,
        "not expired 13 lease seconds after"
    );
    assert_eq!(one.replica.kv().key_count(), 0, "its key went with it");
    assert!(last > granted_at);
    let gone = one.ask(|r, w| r.lease_keep_alive(5, w));
    assert!(
        matches!(gone, Answer::LeaseKeepAlive { id: 5, ttl: 0 }),
        "{gone:?}"
    );
    let unknown = one.ask(|r, w| r.lease_time_to_live(99, false, w));
    assert!(matches!(
        unknown,
        Answer::LeaseTimeToLive {
            ttl: -1,
            granted_ttl: 0,
            ..
        }
    ));
    let listed = one.ask(|r, w| r.lease_leases(w));
    assert!(matches!(listed, Answer::Leases(ref ids) if ids.is_empty()));
}
