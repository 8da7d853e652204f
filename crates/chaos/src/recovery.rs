//! (c) Progress after healing: how long until every member serves a write and a
//! linearizable read again. Each member is probed on its own (a slow one must not delay the
//! others' measurement), on keys the register check does not look at.

use crate::clients::{Members, Roster};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time from now until every member of `at` answered a put and then a linearizable get, or
/// `None` if some member did not within `limit`.
pub async fn measure(roster: &Arc<Roster>, at: &[usize], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut probes = Vec::new();
    for &i in at {
        let roster = roster.clone();
        probes.push(tokio::spawn(async move {
            let mut members = Members::over(roster, Duration::from_secs(1));
            let key = format!("probe/{i}");
            while start.elapsed() < limit {
                if probe(&mut members, i, &key).await {
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

async fn probe(members: &mut Members, i: usize, key: &str) -> bool {
    let Some(mut c) = members.client(i).await else {
        return false;
    };
    let t = Duration::from_secs(1);
    let put = tokio::time::timeout(t, c.put(key, "x", None)).await;
    if !matches!(put, Ok(Ok(_))) {
        return false;
    }
    matches!(tokio::time::timeout(t, c.get(key, None)).await, Ok(Ok(_)))
}
