//! etcd's `Campaign`, `Proclaim`, `Resign` and `Leader` (`v3election`, over
//! `concurrency.Election`). The leader is the oldest key under `name/`.
//!
//! - Campaign: with lease 0 a lease of [`SESSION_TTL`] is granted first. One Txn puts
//!   `name/<hex lease>` with the value if absent, or else reads it; our revision is the
//!   Txn's or the key's create revision. A key already there with another value is
//!   proclaimed (failing: resign, and answer the failure). Then wait for every older key to
//!   go ([`super::wait`]). The answer carries the campaign Txn's header (even after a
//!   proclaim, as etcd 3.5.30 answers) and the `LeaderKey`. Unlike Lock, the key is not read
//!   again after the wait: a key whose lease ended meanwhile is still answered elected, as
//!   in etcd. A caller giving up while waiting resigns; a wait that fails does not.
//! - Proclaim: a Txn putting the value (with the leader's lease) if the leader's key still
//!   has its create revision; else "election: not leader".
//! - Resign: a Txn deleting the leader's key if it still has its create revision; answered
//!   with the Txn's header whether it deleted or not (etcd 3.5.30 never fails it).
//! - Proclaim and Resign with lease 0 grant a lease first, as etcd's session does; Resign
//!   then does not use it.

use super::wait::Predecessors;
use super::{
    granted, guarded, lease_key, oldest, prefix_of, txn_of, txn_range, Progress, RecipeError,
    Reply, Step, SESSION_TTL,
};
use bytes::Bytes;
use synod_kv::{
    DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RangeResponse, Request, RequestOp,
};

/// etcd's `LeaderKey`: a campaign's key, what Proclaim and Resign name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: Bytes,
    /// `name/<hex lease>`.
    pub key: Bytes,
    /// The key's create revision.
    pub rev: i64,
    pub lease: i64,
}

/// A campaign won.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaigned {
    pub leader: LeaderKey,
    /// The header revision of the answer: the campaign Txn's.
    pub revision: i64,
}

/// The leader now, as Leader answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub revision: i64,
    pub kv: KeyValue,
}

/// Leader: read the oldest key under `name/`.
pub fn leader_read(name: &[u8]) -> RangeRequest {
    oldest(&prefix_of(name))
}

impl Current {
    /// Leader's answer from the read of [`leader_read`].
    pub fn from_read<E>(response: RangeResponse) -> Result<Current, RecipeError<E>> {
        let kv = response.kvs.into_iter().next();
        let kv = kv.ok_or(RecipeError::NoLeader)?;
        Ok(Current {
            revision: response.header.revision,
            kv,
        })
    }
}

fn put_leader(key: &Bytes, rev: i64, value: Bytes, lease: i64) -> Request {
    let put = PutRequest {
        lease,
        ..PutRequest::new(key.clone(), value)
    };
    Request::Txn(guarded(key, rev, vec![RequestOp::Put(put)]))
}

fn resign_txn(key: &Bytes, rev: i64) -> Request {
    let delete = RequestOp::DeleteRange(DeleteRangeRequest::key(key.clone()));
    Request::Txn(guarded(key, rev, vec![delete]))
}

/// One Campaign call (see the module docs).
#[derive(Debug)]
pub struct Campaign<E> {
    leader: LeaderKey,
    value: Bytes,
    /// The campaign Txn's revision, the answer's header.
    revision: i64,
    state: CampaignState<E>,
}

#[derive(Debug)]
enum CampaignState<E> {
    Granting,
    Campaigning,
    Proclaiming,
    Waiting(Predecessors),
    /// Resigning after the error held, which is the answer whatever the resign's outcome.
    Resigning(RecipeError<E>),
    Finished,
}

impl<E> Campaign<E> {
    /// Campaign in election `name` with `lease` (0: grant one first) and `value`.
    pub fn start(name: &[u8], lease: i64, value: Bytes) -> (Campaign<E>, Step) {
        let mut campaign = Campaign {
            leader: LeaderKey {
                name: Bytes::copy_from_slice(name),
                ..LeaderKey::default()
            },
            value,
            revision: 0,
            state: CampaignState::Granting,
        };
        if lease == 0 {
            return (campaign, Step::Grant { ttl: SESSION_TTL });
        }
        let step = campaign.campaign(lease);
        (campaign, step)
    }

    fn campaign(&mut self, lease: i64) -> Step {
        let key = lease_key(&prefix_of(&self.leader.name), lease);
        self.leader.key = key.clone();
        self.leader.lease = lease;
        self.state = CampaignState::Campaigning;
        let put = PutRequest {
            lease,
            ..PutRequest::new(key.clone(), self.value.clone())
        };
        let mut txn = guarded(&key, 0, vec![RequestOp::Put(put)]);
        txn.failure = vec![RequestOp::Range(RangeRequest::key(key))];
        Step::Write(Request::Txn(txn))
    }

    /// The next step after `reply` (the outcome of the last step), or the answer.
    pub fn next(&mut self, reply: Result<Reply, E>) -> Progress<Campaigned, E> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return self.failed(RecipeError::Request(e)),
        };
        let outcome = match std::mem::replace(&mut self.state, CampaignState::Finished) {
            CampaignState::Granting => {
                granted(reply).map(|lease| Progress::Next(self.campaign(lease)))
            }
            CampaignState::Campaigning => self.campaigned(reply),
            CampaignState::Proclaiming => txn_of(reply).map(|txn| {
                if txn.succeeded {
                    self.wait()
                } else {
                    self.resign(RecipeError::NotLeader)
                }
            }),
            CampaignState::Waiting(wait) => wait.next(reply).map(|next| match next {
                Some(step) => {
                    self.state = CampaignState::Waiting(wait);
                    Progress::Next(step)
                }
                None => Progress::Done(Ok(Campaigned {
                    leader: self.leader.clone(),
                    revision: self.revision,
                })),
            }),
            CampaignState::Resigning(error) => return Progress::Done(Err(error)),
            CampaignState::Finished => Err("a reply to a campaign that is done"),
        };
        outcome.unwrap_or_else(|what| Progress::Done(Err(RecipeError::Unexpected(what))))
    }

    /// A step failed in `self.state` (not yet replaced).
    fn failed(&mut self, error: RecipeError<E>) -> Progress<Campaigned, E> {
        match std::mem::replace(&mut self.state, CampaignState::Finished) {
            // etcd resigns when proclaiming an existing key fails.
            CampaignState::Proclaiming => self.resign(error),
            CampaignState::Resigning(first) => Progress::Done(Err(first)),
            _ => Progress::Done(Err(error)),
        }
    }

    fn campaigned(&mut self, reply: Reply) -> Result<Progress<Campaigned, E>, &'static str> {
        let txn = txn_of(reply)?;
        self.revision = txn.header.revision;
        self.leader.rev = txn.header.revision;
        if txn.succeeded {
            return Ok(self.wait());
        }
        let ours = txn_range(&txn, 0)?;
        let kv = ours
            .kvs
            .first()
            .ok_or("our key is missing where it exists")?;
        self.leader.rev = kv.create_revision;
        if kv.value == self.value {
            return Ok(self.wait());
        }
        self.state = CampaignState::Proclaiming;
        let leader = &self.leader;
        let put = put_leader(&leader.key, leader.rev, self.value.clone(), leader.lease);
        Ok(Progress::Next(Step::Write(put)))
    }

    fn wait(&mut self) -> Progress<Campaigned, E> {
        let prefix = prefix_of(&self.leader.name);
        let (wait, step) = Predecessors::start(prefix, self.leader.rev);
        self.state = CampaignState::Waiting(wait);
        Progress::Next(step)
    }

    fn resign(&mut self, error: RecipeError<E>) -> Progress<Campaigned, E> {
        self.state = CampaignState::Resigning(error);
        Progress::Next(Step::Write(resign_txn(&self.leader.key, self.leader.rev)))
    }

    /// What to do if the caller gives up now: resign if the campaign is waiting, as etcd
    /// does when a Campaign's context is cancelled. Its outcome is not waited for.
    pub fn abort(&self) -> Option<Request> {
        match self.state {
            CampaignState::Waiting(_) => Some(resign_txn(&self.leader.key, self.leader.rev)),
            _ => None,
        }
    }
}

/// What Proclaim and Resign share: the leader they name, and a lease to grant first if it
/// names lease 0.
#[derive(Debug)]
struct Named {
    leader: LeaderKey,
    granting: bool,
}

impl Named {
    fn start<E>(leader: Option<LeaderKey>) -> Result<(Named, Option<Step>), RecipeError<E>> {
        let leader = leader.ok_or(RecipeError::MissingLeader)?;
        let granting = leader.lease == 0;
        let grant = granting.then_some(Step::Grant { ttl: SESSION_TTL });
        Ok((Named { leader, granting }, grant))
    }
}

/// One Proclaim call (see the module docs); done with the answer's header revision.
#[derive(Debug)]
pub struct Proclaim {
    named: Named,
    value: Bytes,
}

impl Proclaim {
    /// Proclaim `value` as `leader` (its key, create revision and lease).
    pub fn start<E>(leader: Option<LeaderKey>, value: Bytes) -> (Proclaim, Progress<i64, E>) {
        let (named, grant) = match Named::start(leader) {
            Ok(started) => started,
            Err(e) => return (Proclaim::ended(value), Progress::Done(Err(e))),
        };
        let proclaim = Proclaim { named, value };
        let step = grant.unwrap_or_else(|| proclaim.put(proclaim.named.leader.lease));
        (proclaim, Progress::Next(step))
    }

    fn ended(value: Bytes) -> Proclaim {
        Proclaim {
            named: Named {
                leader: LeaderKey::default(),
                granting: false,
            },
            value,
        }
    }

    fn put(&self, lease: i64) -> Step {
        let leader = &self.named.leader;
        Step::Write(put_leader(
            &leader.key,
            leader.rev,
            self.value.clone(),
            lease,
        ))
    }

    /// The next step after `reply`, or the answer.
    pub fn next<E>(&mut self, reply: Result<Reply, E>) -> Progress<i64, E> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return Progress::Done(Err(RecipeError::Request(e))),
        };
        if std::mem::take(&mut self.named.granting) {
            return match granted(reply) {
                Ok(lease) => Progress::Next(self.put(lease)),
                Err(what) => Progress::Done(Err(RecipeError::Unexpected(what))),
            };
        }
        match txn_of(reply) {
            Ok(txn) if txn.succeeded => Progress::Done(Ok(txn.header.revision)),
            Ok(_) => Progress::Done(Err(RecipeError::NotLeader)),
            Err(what) => Progress::Done(Err(RecipeError::Unexpected(what))),
        }
    }
}

/// One Resign call (see the module docs); done with the answer's header revision.
#[derive(Debug)]
pub struct Resign {
    named: Named,
}

impl Resign {
    /// Resign as `leader` (its key and create revision).
    pub fn start<E>(leader: Option<LeaderKey>) -> (Resign, Progress<i64, E>) {
        let (named, grant) = match Named::start(leader) {
            Ok(started) => started,
            Err(e) => return (Resign::ended(), Progress::Done(Err(e))),
        };
        let resign = Resign { named };
        let step = grant.unwrap_or_else(|| resign.delete());
        (resign, Progress::Next(step))
    }

    fn ended() -> Resign {
        Resign {
            named: Named {
                leader: LeaderKey::default(),
                granting: false,
            },
        }
    }

    fn delete(&self) -> Step {
        Step::Write(resign_txn(&self.named.leader.key, self.named.leader.rev))
    }

    /// The next step after `reply`, or the answer.
    pub fn next<E>(&mut self, reply: Result<Reply, E>) -> Progress<i64, E> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return Progress::Done(Err(RecipeError::Request(e))),
        };
        if std::mem::take(&mut self.named.granting) {
            return match granted(reply) {
                Ok(_) => Progress::Next(self.delete()),
                Err(what) => Progress::Done(Err(RecipeError::Unexpected(what))),
            };
        }
        match txn_of(reply) {
            Ok(txn) => Progress::Done(Ok(txn.header.revision)),
            Err(what) => Progress::Done(Err(RecipeError::Unexpected(what))),
        }
    }
}
