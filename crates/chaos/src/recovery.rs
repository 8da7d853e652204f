//! (c) Progress after healing: how long until every member serves a write and a
//! linearizable read again. Each member is probed on its own (a slow one must not delay the
//! others' measurement), on keys of its own. The probes go into the history: they write,
//! and the history must hold every write for its revisions to be checked exactly.

use crate::clients::{Members, Roster};
use crate::etcd::PROBES;
use crate::workload::{run_one, Outcome, Shared, HARNESS_CLIENT};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_check::Op;

/// Time from now until every member of `at` answered a put and then a linearizable get, or
/// `None` if some member did not within `limit`.
pub async fn measure(
    roster: &Arc<Roster>,
    at: &[usize],
    limit: Duration,
    shared: &Arc<Shared>,
) -> Option<Duration> {
    let start = Instant::now();
    let mut probes = Vec::new();
    for &i in at {
        let roster = roster.clone();
        let shared = shared.clone();
        probes.push(tokio::spawn(async move {
            let mut members = Members::over(roster, Duration::from_secs(1));
            while start.elapsed() < limit {
                if probe(&mut members, i, &shared).await {
                    return Some(start.elapsed());
                }
                members.failed(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        }));
    }
    let mut slowest = Duration::ZERO;
    for p in probes {
        slowest = slowest.max(p.await.ok().flatten()?);
    }
    Some(slowest)
}

async fn probe(members: &mut Members, i: usize, shared: &Shared) -> bool {
    let key = PROBES + i as u64;
    let t = Duration::from_secs(1);
    let put = Op::Put { key, value: 0 };
    if !matches!(
        run_one(HARNESS_CLIENT, &put, i, members, t, shared).await,
        Outcome::Answered(_)
    ) {
        return false;
    }
    let get = Op::Get { key };
    matches!(
        run_one(HARNESS_CLIENT, &get, i, members, t, shared).await,
        Outcome::Answered(_)
    )
}
