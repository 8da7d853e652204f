//! The recipes driven against a real `synod_kv::KvStore`: each step is applied to the store
//! (a wait is satisfied from the store's history once the key's delete is in it) and its
//! outcome fed back, with other clients' writes in between.

use super::*;
use crate::watch::{WatchEvent, WatchResponse};
use synod_kv::{
    Budget, EventKind, History, KeyRange, KvError, KvStore, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest,
};

type Error = RecipeError<KvError>;

/// A store and the shell's side of every step.
struct World {
    store: KvStore,
    /// The id the next granted lease gets.
    next_lease: i64,
}

/// How far a machine got: its answer, or the wait it is blocked in.
#[derive(Debug)]
enum Run<T> {
    Done(Result<T, Error>),
    Blocked(Step),
}

/// A machine the tests drive.
trait Machine {
    type Out;
    fn feed(&mut self, reply: Result<Reply, KvError>) -> Progress<Self::Out, KvError>;
}

impl Machine for Lock<KvError> {
    type Out = Locked;
    fn feed(&mut self, reply: Result<Reply, KvError>) -> Progress<Locked, KvError> {
        self.next(reply)
    }
}

impl Machine for Campaign<KvError> {
    type Out = Campaigned;
    fn feed(&mut self, reply: Result<Reply, KvError>) -> Progress<Campaigned, KvError> {
        self.next(reply)
    }
}

impl Machine for Proclaim {
    type Out = i64;
    fn feed(&mut self, reply: Result<Reply, KvError>) -> Progress<i64, KvError> {
        self.next(reply)
    }
}

impl Machine for Resign {
    type Out = i64;
    fn feed(&mut self, reply: Result<Reply, KvError>) -> Progress<i64, KvError> {
        self.next(reply)
    }
}

fn everything() -> Budget {
    Budget {
        events_max: usize::MAX,
        bytes_max: usize::MAX,
    }
}

impl World {
    fn new() -> World {
        World {
            store: KvStore::new(),
            next_lease: 0x2a,
        }
    }

    fn apply(&mut self, request: &Request) -> Result<Response, KvError> {
        self.store.apply(0, 0, request)
    }

    fn grant(&mut self, id: i64) -> i64 {
        let grant = LeaseGrantRequest { id, ttl: 60 };
        self.apply(&Request::LeaseGrant(grant)).expect("grant");
        id
    }

    fn revoke(&mut self, id: i64) {
        let revoke = LeaseRevokeRequest { id, expiry: None };
        self.apply(&Request::LeaseRevoke(revoke)).expect("revoke");
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let put = Request::Put(PutRequest::new(key.to_owned(), value.to_owned()));
        self.apply(&put).expect("put").header().revision
    }

    fn delete(&mut self, key: &Bytes) -> i64 {
        let delete = lock::unlock_request(key.clone());
        self.apply(&delete).expect("delete").header().revision
    }

    fn get(&self, key: &[u8]) -> Option<synod_kv::KeyValue> {
        let read = RangeRequest::key(Bytes::copy_from_slice(key));
        self.store.range(&read).unwrap().kvs.into_iter().next()
    }

    fn events(&self, range: &KeyRange, from: i64) -> Vec<synod_kv::Event> {
        let to = self.store.revision();
        self.store
            .changes(range, from, to, everything())
            .unwrap()
            .events
    }

    /// The outcome of `step`, or `None` for a wait whose delete has not happened.
    fn serve(&mut self, step: &Step) -> Option<Result<Reply, KvError>> {
        Some(match step {
            Step::Write(request) => self.apply(request).map(Reply::Kv),
            Step::Read(read) => self
                .store
                .range(read)
                .map(|r| Reply::Kv(Response::Range(r))),
            Step::Grant { ttl } => {
                let id = self.next_lease;
                self.next_lease += 1;
                let grant = LeaseGrantRequest { id, ttl: *ttl };
                self.apply(&Request::LeaseGrant(grant)).map(Reply::Kv)
            }
            Step::WaitDelete { key, from_revision } => {
                let range = KeyRange::new(key.clone(), Bytes::new());
                let events = self.events(&range, *from_revision);
                events.iter().find(|e| e.kind == EventKind::Delete)?;
                Ok(Reply::Deleted)
            }
        })
    }

    /// Drives `machine` from `progress` until it answers or blocks in a wait.
    fn drive<M: Machine>(
        &mut self,
        machine: &mut M,
        mut progress: Progress<M::Out, KvError>,
    ) -> Run<M::Out> {
        loop {
            let step = match progress {
                Progress::Done(result) => return Run::Done(result),
                Progress::Next(step) => step,
            };
            match self.serve(&step) {
                Some(reply) => progress = machine.feed(reply),
                None => return Run::Blocked(step),
            }
        }
    }

    /// Drives a machine blocked in `run` on, if its wait is over.
    fn resume<M: Machine>(&mut self, machine: &mut M, run: Run<M::Out>) -> Run<M::Out> {
        match run {
            Run::Blocked(step) => match self.serve(&step) {
                Some(reply) => {
                    let progress = machine.feed(reply);
                    self.drive(machine, progress)
                }
                None => Run::Blocked(step),
            },
            done => done,
        }
    }

    fn lock(&mut self, name: &str, lease: i64) -> (Lock<KvError>, Run<Locked>) {
        let (mut lock, step) = Lock::start(name.as_bytes(), lease);
        let run = self.drive(&mut lock, Progress::Next(step));
        (lock, run)
    }

    fn campaign(
        &mut self,
        name: &str,
        lease: i64,
        value: &str,
    ) -> (Campaign<KvError>, Run<Campaigned>) {
        let value = Bytes::copy_from_slice(value.as_bytes());
        let (mut campaign, step) = Campaign::start(name.as_bytes(), lease, value);
        let run = self.drive(&mut campaign, Progress::Next(step));
        (campaign, run)
    }

    fn proclaim(&mut self, leader: Option<LeaderKey>, value: &str) -> Result<i64, Error> {
        let value = Bytes::copy_from_slice(value.as_bytes());
        let (mut proclaim, progress) = Proclaim::start(leader, value);
        done(self.drive(&mut proclaim, progress))
    }

    fn resign(&mut self, leader: Option<LeaderKey>) -> Result<i64, Error> {
        let (mut resign, progress) = Resign::start(leader);
        done(self.drive(&mut resign, progress))
    }

    fn leader(&self, name: &str) -> Result<Current, Error> {
        let read = self.store.range(&leader_read(name.as_bytes())).unwrap();
        Current::from_read(read)
    }
}

fn done<T: std::fmt::Debug>(run: Run<T>) -> Result<T, Error> {
    match run {
        Run::Done(result) => result,
        Run::Blocked(step) => panic!("blocked in {step:?}"),
    }
}

fn blocked_on<T: std::fmt::Debug>(run: &Run<T>) -> Bytes {
    match run {
        Run::Blocked(Step::WaitDelete { key, .. }) => key.clone(),
        other => panic!("not waiting: {other:?}"),
    }
}

mod election_tests;
mod lock_tests;
mod observe_tests;
