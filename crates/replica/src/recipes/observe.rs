//! etcd's `Observe` (`concurrency.Election.Observe`): the leader's key, then each put to it,
//! until it is deleted; then the next leader, and so on, for as long as the caller listens.
//!
//! Read the oldest key under `name/`. Found: answer it with the read's header, then watch
//! that key from the next revision, answering each put with its watch response's revision,
//! until a delete, and read again. None: watch the whole prefix from the read's revision
//! and take the first put as the leader (answered with its own revision), then follow it as
//! above. A failed read or a watch that ends (cancelled, compacted) ends the stream without
//! an error, as etcd's does. Puts that come in one watch response before the leader's
//! delete are answered before the next leader is read.

use super::{oldest, prefix_of};
use crate::watch::WatchResponse;
use bytes::Bytes;
use synod_kv::{EventKind, KeyRange, KeyValue, RangeRequest, Response};

/// What the shell does next for an [`Observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObserveStep {
    /// Serve this read linearizably and hand the response to [`Observe::on_read`].
    Read(RangeRequest),
    /// Drop any watch open for this observer and watch `range` from `from_revision`, handing
    /// each watch response to [`Observe::on_watch`].
    Watch { range: KeyRange, from_revision: i64 },
    /// Keep the current watch.
    Continue,
    /// Stop: the stream ends.
    End,
}

/// One answer on the stream: the leader's key as of `revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub revision: i64,
    pub kv: KeyValue,
}

/// One Observe stream (see the module docs).
#[derive(Debug)]
pub struct Observe {
    prefix: Bytes,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Reading,
    /// No leader was found: the first put under the prefix will be.
    AwaitingLeader,
    /// Following this leader's key.
    Following,
    Ended,
}

impl Observe {
    /// Observe election `name`.
    pub fn start(name: &[u8]) -> (Observe, ObserveStep) {
        let prefix = prefix_of(name);
        let read = ObserveStep::Read(oldest(&prefix));
        let observe = Observe {
            prefix,
            state: State::Reading,
        };
        (observe, read)
    }

    /// The read's outcome (a failed read ends the stream: call nothing, or this with
    /// anything but a range response).
    pub fn on_read(&mut self, response: Response, out: &mut Vec<Observed>) -> ObserveStep {
        let Response::Range(range) = response else {
            return self.end();
        };
        if self.state != State::Reading {
            return self.end();
        }
        let revision = range.header.revision;
        match range.kvs.into_iter().next() {
            Some(kv) => self.follow(revision, kv, out),
            None => {
                self.state = State::AwaitingLeader;
                ObserveStep::Watch {
                    range: KeyRange::new(
                        self.prefix.clone(),
                        synod_kv::prefix_range(self.prefix.clone()).1,
                    ),
                    from_revision: revision,
                }
            }
        }
    }

    /// One response of the watch asked for last.
    pub fn on_watch(&mut self, response: &WatchResponse, out: &mut Vec<Observed>) -> ObserveStep {
        if response.canceled {
            return self.end();
        }
        match self.state {
            State::AwaitingLeader => {
                // Deletes are passed over: a leader is a key that was put.
                let first_put = response.events.iter().find(|e| e.kind == EventKind::Put);
                match first_put {
                    Some(event) => {
                        let kv = event.kv.clone();
                        self.follow(kv.mod_revision, kv, out)
                    }
                    None => ObserveStep::Continue,
                }
            }
            State::Following => {
                for event in &response.events {
                    if event.kind == EventKind::Delete {
                        self.state = State::Reading;
                        return ObserveStep::Read(oldest(&self.prefix));
                    }
                    out.push(Observed {
                        revision: response.revision,
                        kv: event.kv.clone(),
                    });
                }
                ObserveStep::Continue
            }
            State::Reading | State::Ended => self.end(),
        }
    }

    /// Answers `kv` as the leader as of `revision` and follows its key.
    fn follow(&mut self, revision: i64, kv: KeyValue, out: &mut Vec<Observed>) -> ObserveStep {
        let key = kv.key.clone();
        out.push(Observed { revision, kv });
        self.state = State::Following;
        ObserveStep::Watch {
            range: KeyRange::new(key, Bytes::new()),
            from_revision: revision + 1,
        }
    }

    fn end(&mut self) -> ObserveStep {
        self.state = State::Ended;
        ObserveStep::End
    }
}
