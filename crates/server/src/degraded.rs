//! What a member does while a condition refuses writes (its log cannot be written): if it
//! leads, it hands leadership to another voter. It could not make its own acceptances
//! durable, and a leader whose clients are refused helps no one; the others can lead. Once it
//! follows, it cannot lead again: a campaign's Prepares leave only after its own promise is
//! durable, which never happens now.

use crate::metrics::Metrics;
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Watches this member's conditions for as long as the member runs.
pub async fn hand_off_leadership_while_refusing_writes(
    replica: ReplicaHandle,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    election_timeout: Duration,
) {
    let mut attempt = 0usize;
    loop {
        // Created before the check, so a raise in between is not missed.
        let changed = metrics.conditions.changed();
        if metrics.conditions.write_refusal().is_none() {
            changed.await;
            continue;
        }
        let live = shared.status();
        if live.leader == Some(shared.member_id) {
            let others: Vec<u64> = live
                .voters
                .iter()
                .copied()
                .filter(|&v| v != shared.member_id)
                .collect();
            if !others.is_empty() {
                // Another voter each try, in case one is down.
                let to = others[attempt % others.len()];
                attempt += 1;
                tracing::warn!(
                    to = format!("{to:x}"),
                    "handing leadership on: this member refuses writes"
                );
                if let Err(e) = replica.move_leader(to).await {
                    tracing::warn!(to = format!("{to:x}"), "leadership hand-off: {e}");
                }
            }
        }
        tokio::time::sleep(election_timeout).await;
    }
}
