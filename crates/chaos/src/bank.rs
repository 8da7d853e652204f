//! The bank workload: accounts `b/00..`, transfers between two of them as one Txn guarded by
//! both accounts' mod revisions, and reads of all accounts at once. Every read, at any
//! member, linearizable or serializable, must show every account and the same total: a
//! transfer applied in part, twice, or on a stale balance breaks it. The setup, the
//! transfers and the linearizable reads go into the history too (serializable reads may
//! be stale by design and stay out of it).

use crate::clients::{Members, Roster};
use crate::etcd::{all_accounts, range_of, ACCOUNTS};
use crate::workload::{run_one, Outcome, Shared, WorkloadSpec, HARNESS_CLIENT};
use etcd_client::{Client, GetOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_check::{Compare, Op, Response, Target, Txn, TxnOp};
use synod_testkit::rng::Rng;

/// The checker key of account `a` (etcd key `b/{a:02}`).
pub fn account(a: u64) -> u64 {
    ACCOUNTS + a
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankCounts {
    pub reads: u64,
    pub transfers_ok: u64,
    /// Refused by the guard (a concurrent transfer moved one of the balances).
    pub transfers_conflicted: u64,
    pub transfers_failed: u64,
    pub transfers_unknown: u64,
}

impl BankCounts {
    pub fn add(&mut self, o: &BankCounts) {
        self.reads += o.reads;
        self.transfers_ok += o.transfers_ok;
        self.transfers_conflicted += o.transfers_conflicted;
        self.transfers_failed += o.transfers_failed;
        self.transfers_unknown += o.transfers_unknown;
    }
}

#[derive(Debug, Default)]
pub struct BankLog {
    inner: Mutex<(BankCounts, Vec<String>)>,
}

impl BankLog {
    fn update(&self, f: impl FnOnce(&mut BankCounts, &mut Vec<String>)) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (counts, violations) = &mut *g;
        f(counts, violations);
    }

    pub fn counts(&self) -> BankCounts {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}

/// One account as read: balance and mod revision.
type Account = (u64, u64);

/// Reads every account at member `node` as client `id`, records a linearizable read,
/// checks the total, and returns the accounts (`None`: no answer).
pub async fn read_and_check(
    mut client: Client,
    serializable: bool,
    spec: &WorkloadSpec,
    shared: &Shared,
    (id, node): (u64, usize),
) -> Option<Vec<Account>> {
    let mut options = GetOptions::new().with_prefix();
    if serializable {
        options = options.with_serializable();
    }
    let index = (!serializable).then(|| shared.recorder.invoke(id, all_accounts(), node));
    let answer = tokio::time::timeout(spec.op_timeout, client.get("b/", Some(options))).await;
    let Ok(Ok(r)) = answer else {
        // A read that failed changed nothing.
        if let Some(i) = index {
            shared.recorder.failed(i);
        }
        return None;
    };
    let (accounts, malformed) = match range_of(&r) {
        Ok(response) => {
            let accounts = match &response {
                Response::Range { reads, .. } => reads
                    .iter()
                    .map(|(_, read)| {
                        let m = read.meta.map_or(0, |m| m.mod_revision);
                        (read.value.unwrap_or(0), m)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if let Some(i) = index {
                shared.recorder.complete(i, response);
            }
            (accounts, None)
        }
        Err(m) => {
            if let Some(i) = index {
                shared.recorder.unknown(i);
            }
            (Vec::new(), Some(m))
        }
    };
    let total: u64 = accounts.iter().map(|a| a.0).sum();
    let expected = spec.accounts * spec.initial_balance;
    let revision = r.header().map_or(0, |h| h.revision());
    let kind = if serializable {
        "serializable"
    } else {
        "linearizable"
    };
    // A serializable read at a member still replaying its log (after a restart) may show
    // the state before the accounts existed: an older state, which it is allowed to serve.
    let before_the_bank = serializable && accounts.is_empty() && malformed.is_none();
    shared.bank.update(|counts, violations| {
        counts.reads += 1;
        let whole = accounts.len() as u64 == spec.accounts && total == expected;
        if !before_the_bank && (malformed.is_some() || !whole) {
            violations.push(format!(
                "bank: {kind} read at member {node} (revision {revision}) shows {} accounts \
                 totalling {total}, expected {} totalling {expected}{}: {:?}",
                accounts.len(),
                spec.accounts,
                malformed
                    .as_ref()
                    .map_or(String::new(), |m| format!(" ({m})")),
                accounts.iter().map(|a| a.0).collect::<Vec<_>>(),
            ));
        }
    });
    Some(accounts)
}

/// Creates the accounts once (idempotent: guarded by the first account's absence), retrying
/// until it is known to be done.
pub async fn init(
    roster: Arc<Roster>,
    spec: &WorkloadSpec,
    shared: &Shared,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut members = Members::over(roster, spec.op_timeout);
    let mut rng = Rng::new(1);
    let create = Op::Txn(Txn {
        compares: vec![Compare {
            key: account(0),
            target: Target::Version(0),
        }],
        success: (0..spec.accounts)
            .map(|a| TxnOp::Put {
                key: account(a),
                value: spec.initial_balance,
            })
            .collect(),
        failure: Vec::new(),
    });
    loop {
        let node = members.pick(&mut rng);
        let outcome = run_one(
            HARNESS_CLIENT,
            &create,
            node,
            &mut members,
            spec.op_timeout,
            shared,
        );
        // Answered but not succeeded: an earlier attempt did it.
        if let Outcome::Answered(_) = outcome.await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "could not create the bank accounts within {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One bank client, until `shared.stop`: read everything (checking the total), then often
/// move a little money between two accounts.
pub async fn bank_worker(
    id: u64,
    roster: Arc<Roster>,
    spec: WorkloadSpec,
    shared: Arc<Shared>,
    mut rng: Rng,
) {
    let mut members = Members::over(roster, spec.op_timeout);
    while !shared.stopped() {
        let node = members.pick(&mut rng);
        let serializable = rng.chance(0.3);
        let read = match members.client(node).await {
            Some(c) => read_and_check(c, serializable, &spec, &shared, (id, node)).await,
            None => None,
        };
        match read {
            None => members.failed(node),
            Some(accounts) if !serializable && accounts.len() as u64 == spec.accounts => {
                if rng.chance(0.8) {
                    transfer(id, &accounts, &mut members, &spec, &shared, &mut rng).await;
                }
            }
            Some(_) => {}
        }
        let think = rng.below(spec.think_max.as_micros() as u64 + 1);
        tokio::time::sleep(Duration::from_micros(think)).await;
    }
}

async fn transfer(
    id: u64,
    accounts: &[Account],
    members: &mut Members,
    spec: &WorkloadSpec,
    shared: &Shared,
    rng: &mut Rng,
) {
    let from = rng.below(spec.accounts);
    let to = (from + rng.range(1, spec.accounts - 1)) % spec.accounts;
    let (fb, fr) = accounts[from as usize];
    let (tb, tr) = accounts[to as usize];
    if fb == 0 {
        return;
    }
    let amount = rng.range(1, fb.min(10));
    let guard = |a, r| Compare {
        key: account(a),
        target: Target::ModRevision(r),
    };
    let op = Op::Txn(Txn {
        compares: vec![guard(from, fr), guard(to, tr)],
        success: vec![
            TxnOp::Put {
                key: account(from),
                value: fb - amount,
            },
            TxnOp::Put {
                key: account(to),
                value: tb + amount,
            },
        ],
        failure: Vec::new(),
    });
    let node = members.pick(rng);
    let outcome = run_one(id, &op, node, members, spec.op_timeout, shared).await;
    shared.bank.update(|counts, _| match outcome {
        Outcome::Answered(Response::Txn {
            succeeded: true, ..
        }) => counts.transfers_ok += 1,
        Outcome::Answered(_) => counts.transfers_conflicted += 1,
        Outcome::Failed => counts.transfers_failed += 1,
        Outcome::Unknown => counts.transfers_unknown += 1,
    });
}
