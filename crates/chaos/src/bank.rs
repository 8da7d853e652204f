//! The bank workload: accounts `b/00..`, transfers between two of them as one Txn guarded by
//! both accounts' mod revisions, and reads of all accounts at once. Every read, at any
//! member, linearizable or serializable, must show every account and the same total: a
//! transfer applied in part, twice, or on a stale balance breaks it.

use crate::clients::{classify, Failure, Members, Roster};
use crate::workload::{Shared, WorkloadSpec};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_sim::rng::Rng;

pub fn account_key(a: u64) -> String {
    format!("b/{a:02}")
}

const PREFIX: &str = "b/";

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
type Account = (u64, i64);

/// Reads every account at `client`, checks the total, and returns the accounts.
pub async fn read_and_check(
    mut client: Client,
    serializable: bool,
    spec: &WorkloadSpec,
    shared: &Shared,
    node: usize,
) -> Result<Vec<Account>, etcd_client::Error> {
    let mut options = GetOptions::new().with_prefix();
    if serializable {
        options = options.with_serializable();
    }
    let r = client.get(PREFIX, Some(options)).await?;
    let mut accounts = Vec::with_capacity(r.kvs().len());
    let mut malformed = None;
    for kv in r.kvs() {
        match crate::history::decode_value(kv.value()) {
            Ok(b) => accounts.push((b, kv.mod_revision())),
            Err(e) => malformed = Some(e),
        }
    }
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
                malformed.map_or(String::new(), |m| format!(" ({m})")),
                accounts.iter().map(|a| a.0).collect::<Vec<_>>(),
            ));
        }
    });
    Ok(accounts)
}

/// Creates the accounts once (idempotent: guarded by the first account's absence), retrying
/// until it is known to be done.
pub async fn init(
    endpoints: &[String],
    spec: &WorkloadSpec,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut members = Members::new(endpoints.to_vec(), spec.op_timeout);
    let mut rng = Rng::new(1);
    loop {
        let node = members.pick(&mut rng);
        if let Some(mut c) = members.client(node).await {
            let txn = Txn::new()
                .when([Compare::version(account_key(0), CompareOp::Equal, 0)])
                .and_then(
                    (0..spec.accounts)
                        .map(|a| TxnOp::put(account_key(a), spec.initial_balance.to_string(), None))
                        .collect::<Vec<_>>(),
                );
            match tokio::time::timeout(spec.op_timeout, c.txn(txn)).await {
                // Not succeeded: an earlier attempt did it.
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) | Err(_) => members.failed(node),
            }
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
            Some(c) => tokio::time::timeout(
                spec.op_timeout,
                read_and_check(c, serializable, &spec, &shared, node),
            )
            .await
            .ok()
            .and_then(Result::ok),
            None => None,
        };
        match read {
            None => members.failed(node),
            Some(accounts) if !serializable && accounts.len() as u64 == spec.accounts => {
                if rng.chance(0.8) {
                    transfer(&accounts, &mut members, &spec, &shared, &mut rng).await;
                }
            }
            Some(_) => {}
        }
        let think = rng.below(spec.think_max.as_micros() as u64 + 1);
        tokio::time::sleep(Duration::from_micros(think)).await;
    }
}

async fn transfer(
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
    let txn = Txn::new()
        .when([
            Compare::mod_revision(account_key(from), CompareOp::Equal, fr),
            Compare::mod_revision(account_key(to), CompareOp::Equal, tr),
        ])
        .and_then([
            TxnOp::put(account_key(from), (fb - amount).to_string(), None),
            TxnOp::put(account_key(to), (tb + amount).to_string(), None),
        ]);
    let node = members.pick(rng);
    let Some(mut c) = members.client(node).await else {
        members.failed(node);
        return;
    };
    let outcome = tokio::time::timeout(spec.op_timeout, c.txn(txn)).await;
    shared.bank.update(|counts, _| match &outcome {
        Ok(Ok(r)) if r.succeeded() => counts.transfers_ok += 1,
        Ok(Ok(_)) => counts.transfers_conflicted += 1,
        Ok(Err(e)) if classify(e).0 == Failure::Definite => counts.transfers_failed += 1,
        _ => counts.transfers_unknown += 1,
    });
    if !matches!(outcome, Ok(Ok(_))) {
        members.failed(node);
    }
}
