//! Running a fault schedule against a live cluster.

use crate::cluster::Cluster;
use crate::proxy::LinkMode;
use crate::schedule::{compound, name, plan, Action, Fault, FaultKind};
use std::time::{Duration, Instant};
use synod_sim::rng::Rng;

/// Which faults a run injects.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Random faults of these kinds, one after another with healthy gaps between them.
    Random(Vec<FaultKind>),
    /// Make `target` the leader (with 5 or more members a topology in which only it can win
    /// an election), then cut it from its peers while clients keep reading from it; again and
    /// again. The lease test: `target` is the member whose clock is skewed.
    IsolateLeader { target: usize },
}

/// One injected fault, for reports.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: String,
    pub description: String,
    /// Since the start of the run.
    pub at: Duration,
    pub held: Duration,
    /// A member cut from all its peers (clients still reach it) from .1 to .2.
    pub isolated: Option<(usize, Instant, Instant)>,
}

pub fn apply(cluster: &mut Cluster, action: Action) -> std::io::Result<()> {
    match action {
        Action::Kill(i) => cluster.members[i].kill(),
        Action::Restart(i) => cluster.members[i].spawn()?,
        Action::Pause(i) => cluster.members[i].pause(),
        Action::Resume(i) => cluster.members[i].resume(),
        Action::Link(a, b, mode) => cluster.set_link(a, b, mode),
        Action::Reset(a, b) => cluster.reset_link(a, b),
    }
    Ok(())
}

/// Injects `fault`, holds it, heals it; returns when it was injected and how long it held.
async fn inject(cluster: &mut Cluster, fault: &Fault) -> std::io::Result<(Instant, Duration)> {
    let began = Instant::now();
    for (actions, wait) in &fault.steps {
        for &a in actions {
            apply(cluster, a)?;
        }
        tokio::time::sleep(*wait).await;
    }
    let held = began.elapsed();
    for a in fault.heal() {
        apply(cluster, a)?;
    }
    Ok((began, held))
}

/// Runs `scenario` for about `duration` (a fault under way is finished), then returns what
/// it did. Every fault is healed on return; `Cluster::heal_all` still runs afterwards.
pub async fn run(
    cluster: &mut Cluster,
    scenario: &Scenario,
    duration: Duration,
    rng: &mut Rng,
    run_start: Instant,
    verbose: bool,
) -> std::io::Result<Vec<FaultRecord>> {
    let end = Instant::now() + duration;
    let mut records = Vec::new();
    while Instant::now() < end {
        let gap = Duration::from_millis(rng.range(300, 1500));
        tokio::time::sleep(gap.min(end.saturating_duration_since(Instant::now()))).await;
        let left = end.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(300) {
            break;
        }
        let record = match scenario {
            Scenario::Random(kinds) => {
                let leader = cluster.leader().await;
                let kind = rng.pick(kinds);
                let hold = Duration::from_millis(rng.range(1000, 5000)).min(left);
                let mut fault = plan(kind, cluster.len(), leader, hold, rng);
                compound(&mut fault, cluster.len(), rng);
                let at = run_start.elapsed();
                if verbose {
                    eprintln!("[{:7.1}s] {}", at.as_secs_f64(), fault.description);
                }
                let (began, held) = inject(cluster, &fault).await?;
                let isolated = (kind == FaultKind::LeaderIsolated)
                    .then_some(leader)
                    .flatten()
                    .map(|l| (l, began, began + held));
                FaultRecord {
                    kind: kind.name().to_string(),
                    description: fault.description.clone(),
                    at,
                    held,
                    isolated,
                }
            }
            Scenario::IsolateLeader { target } => {
                let Some(record) =
                    isolate_leader(cluster, *target, rng, run_start, verbose).await?
                else {
                    continue;
                };
                record
            }
        };
        records.push(record);
    }
    Ok(records)
}

fn cut_off(x: usize, n: usize) -> Vec<Action> {
    (0..n)
        .filter(|&o| o != x)
        .flat_map(|o| {
            [
                Action::Link(x, o, LinkMode::Blackhole),
                Action::Link(o, x, LinkMode::Blackhole),
            ]
        })
        .collect()
}

/// One round of the lease scenario; `None` if `target` could not be made leader.
async fn isolate_leader(
    cluster: &mut Cluster,
    target: usize,
    rng: &mut Rng,
    run_start: Instant,
    verbose: bool,
) -> std::io::Result<Option<FaultRecord>> {
    let n = cluster.len();
    if !cluster.claims_leadership(target).await && n >= 5 {
        steer(cluster, target, rng).await?;
    }
    let leader = if cluster.claims_leadership(target).await {
        target
    } else {
        match cluster.leader().await {
            Some(l) => l,
            None => return Ok(None),
        }
    };
    let hold = Duration::from_millis(rng.range(1200, 2000));
    let fault = Fault {
        kind: FaultKind::LeaderIsolated,
        description: format!("leader {} isolated from its peers", name(leader)),
        steps: vec![(cut_off(leader, n), hold)],
    };
    let at = run_start.elapsed();
    if verbose {
        eprintln!("[{:7.1}s] {}", at.as_secs_f64(), fault.description);
    }
    let (began, held) = inject(cluster, &fault).await?;
    Ok(Some(FaultRecord {
        kind: fault.kind.name().to_string(),
        description: fault.description,
        at,
        held,
        isolated: Some((leader, began, began + held)),
    }))
}

/// Makes `target` the leader: two peers reach only `target` (not each other), the rest are cut
/// off entirely, so `target` is the one member that can gather a majority.
async fn steer(cluster: &mut Cluster, target: usize, rng: &mut Rng) -> std::io::Result<()> {
    let n = cluster.len();
    let mut others: Vec<usize> = (0..n).filter(|&o| o != target).collect();
    rng.shuffle(&mut others);
    let (a, b) = (others[0], others[1]);
    let mut actions = vec![
        Action::Link(a, b, LinkMode::Blackhole),
        Action::Link(b, a, LinkMode::Blackhole),
    ];
    for &o in &others[2..] {
        actions.extend(cut_off(o, n));
    }
    let fault = Fault {
        kind: FaultKind::LeaderIsolated,
        description: String::new(),
        steps: vec![(actions, Duration::ZERO)],
    };
    for (actions, _) in &fault.steps {
        for &a in actions {
            apply(cluster, a)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !cluster.claims_leadership(target).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in fault.heal() {
        apply(cluster, a)?;
    }
    // Let the lease settle with everyone hearing the new leader.
    tokio::time::sleep(Duration::from_millis(700)).await;
    Ok(())
}
