//! Running a fault schedule against a live cluster.

use crate::cluster::Cluster;
use crate::membership::{self, Outcome, Planner};
use crate::proxy::LinkMode;
use crate::schedule::{compound, name, plan, Action, Fault, FaultKind};
use std::time::{Duration, Instant};
use synod_testkit::rng::Rng;

/// Which faults a run injects.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Random faults of these kinds, one after another with healthy gaps between them.
    Random(Vec<FaultKind>),
    /// Make `target` the leader (with 5 or more members a topology in which only it can win
    /// an election), then cut it from its peers while clients keep reading from it; again and
    /// again. The lease test: `target` is the member whose clock is skewed.
    IsolateLeader { target: usize },
    /// Membership changes (`membership.rs`): grow from the initial members to `max` one at a
    /// time, shrink back, again (now and then a replacement or a leader move instead); each
    /// change runs with a fault of `faults` in force half the time, and a third of the turns
    /// are a plain fault instead of a change. When the time is up, everything is healed and
    /// the cluster shrunk back to its initial size.
    Membership { faults: Vec<FaultKind>, max: usize },
}

/// What the nemesis did, and what it found itself.
#[derive(Clone, Debug, Default)]
pub struct Nemesis {
    pub records: Vec<FaultRecord>,
    /// Findings of the nemesis: a membership change that could not be finished with no
    /// fault in force.
    pub findings: Vec<String>,
    /// The most members the cluster had at once.
    pub members_max: usize,
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
        Action::Restart(i) => cluster.restart(i)?,
        Action::Pause(i) => cluster.members[i].pause(),
        Action::Resume(i) => cluster.members[i].resume(),
        Action::Link(a, b, mode) => cluster.set_link(a, b, mode),
        Action::Reset(a, b) => cluster.reset_link(a, b),
        Action::LoseTail(i, how) => {
            cluster.lose_tail(i, how)?;
        }
    }
    Ok(())
}

/// How long, with no fault in force, the last member that lost its log tail may take to
/// finish recovering before the next `lost-tail` fault is given up and the member reported:
/// recovery takes a quiet period of about 2.2 election timeouts (0.44 s here), a round trip
/// to a quorum, and a catch-up.
pub const TAIL_RECOVERY_WAIT: Duration = Duration::from_secs(20);

/// Whether a `lost-tail` fault may be injected now. Never while another member is still
/// recovering from one: two members without their tails are a majority of 3, and a majority
/// that forgot its votes can let a second value be chosen, which no protocol survives. So it
/// waits (no fault is in force meanwhile) for the last one to recover; one that has not
/// within [`TAIL_RECOVERY_WAIT`] is a finding, and no lost tail is injected while it lasts.
async fn may_lose_tail(
    cluster: &Cluster,
    run_start: Instant,
    log: &impl Fn(Duration, &str),
    findings: &mut Vec<String>,
) -> bool {
    let (pending, stuck) = cluster.tails.pending();
    if pending.is_empty() {
        return true;
    }
    let names: Vec<String> = pending.iter().map(|&i| name(i)).collect();
    if stuck {
        log(
            run_start.elapsed(),
            &format!("lost-tail skipped: {} still recovering", names.join(",")),
        );
        return false;
    }
    let stuck = cluster
        .tails
        .wait_recovered(Instant::now() + TAIL_RECOVERY_WAIT)
        .await;
    for &i in &stuck {
        findings.push(format!(
            "lost-tail: {} had not finished recovering from its lost tail after {:?} with no \
             fault in force (its LOST_TAIL marker {}; log ends: {})",
            name(i),
            TAIL_RECOVERY_WAIT,
            marker(cluster, i),
            cluster.members[i].log_tail(1)
        ));
    }
    stuck.is_empty()
}

/// Whether member `i`'s storage still records an unfinished recovery, for reports.
pub fn marker(cluster: &Cluster, i: usize) -> &'static str {
    if crate::tail::marker_present(&cluster.members[i].data_dir) {
        "is still there"
    } else {
        "is gone"
    }
}

/// What the `lost-tail` faults since the `before`-th did to the members' logs.
fn damage_done(cluster: &Cluster, before: usize) -> String {
    cluster
        .tails
        .all()
        .iter()
        .skip(before)
        .map(|t| format!(": {}", t.damage))
        .collect()
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
) -> std::io::Result<Nemesis> {
    let end = Instant::now() + duration;
    let initial = cluster.current().len();
    let mut out = Nemesis {
        members_max: initial,
        ..Nemesis::default()
    };
    let mut planner = match scenario {
        Scenario::Membership { max, .. } => Planner::new(initial, *max),
        _ => Planner::new(initial, initial + 2),
    };
    let log = |at: Duration, what: &str| {
        if verbose {
            eprintln!("[{:7.1}s] {what}", at.as_secs_f64());
        }
    };
    while Instant::now() < end {
        let gap = Duration::from_millis(rng.range(300, 1500));
        tokio::time::sleep(gap.min(end.saturating_duration_since(Instant::now()))).await;
        let left = end.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(300) {
            break;
        }
        match scenario {
            Scenario::Random(kinds) => {
                let kind = rng.pick(kinds);
                if kind == FaultKind::Membership {
                    change(cluster, &mut planner, None, rng, run_start, &log, &mut out).await?;
                } else if let Some(record) =
                    random_fault(cluster, kind, left, rng, run_start, &log, &mut out.findings)
                        .await?
                {
                    out.records.push(record);
                }
            }
            Scenario::IsolateLeader { target } => {
                if let Some(record) =
                    isolate_leader(cluster, *target, rng, run_start, verbose).await?
                {
                    out.records.push(record);
                }
            }
            Scenario::Membership { faults, .. } => {
                let plain: Vec<FaultKind> = faults
                    .iter()
                    .copied()
                    .filter(|&k| k != FaultKind::Membership)
                    .collect();
                if !plain.is_empty() && rng.chance(0.33) {
                    let kind = rng.pick(&plain);
                    if let Some(record) =
                        random_fault(cluster, kind, left, rng, run_start, &log, &mut out.findings)
                            .await?
                    {
                        out.records.push(record);
                    }
                    continue;
                }
                // Faults of one step: held while the change runs.
                let during: Vec<FaultKind> = plain
                    .iter()
                    .copied()
                    .filter(|k| !matches!(k, FaultKind::Resets | FaultKind::ConstrainedElection))
                    .collect();
                let overlap = (!during.is_empty() && rng.chance(0.5)).then(|| rng.pick(&during));
                change(
                    cluster,
                    &mut planner,
                    overlap,
                    rng,
                    run_start,
                    &log,
                    &mut out,
                )
                .await?;
            }
        }
    }
    if let Scenario::Membership { .. } = scenario {
        settle(cluster, &planner, rng, run_start, &log, &mut out).await?;
    }
    Ok(out)
}

/// One fault of `kind` among the current members, injected, held and healed (`None`: a lost
/// tail that had to be skipped, see [`may_lose_tail`]).
async fn random_fault(
    cluster: &mut Cluster,
    kind: FaultKind,
    left: Duration,
    rng: &mut Rng,
    run_start: Instant,
    log: &impl Fn(Duration, &str),
    findings: &mut Vec<String>,
) -> std::io::Result<Option<FaultRecord>> {
    if kind == FaultKind::LostTail && !may_lose_tail(cluster, run_start, log, findings).await {
        return Ok(None);
    }
    let leader = cluster.leader().await;
    let members = cluster.current();
    let hold = Duration::from_millis(rng.range(1000, 5000)).min(left);
    let mut fault = plan(kind, &members, leader, hold, rng);
    compound(&mut fault, &members, rng);
    let at = run_start.elapsed();
    log(at, &fault.description);
    let damaged_before = cluster.tails.all().len();
    let (began, held) = inject(cluster, &fault).await?;
    let damage = damage_done(cluster, damaged_before);
    if !damage.is_empty() {
        log(at, &format!("lost tail{damage}"));
    }
    let isolated = (kind == FaultKind::LeaderIsolated)
        .then_some(leader)
        .flatten()
        .map(|l| (l, began, began + held));
    Ok(Some(FaultRecord {
        kind: kind.name().to_string(),
        description: format!("{}{damage}", fault.description),
        at,
        held,
        isolated,
    }))
}

fn change_record(outcome: Outcome, at: Duration, held: Duration) -> FaultRecord {
    FaultRecord {
        kind: outcome.kind.to_string(),
        description: if outcome.done {
            outcome.description
        } else {
            format!("{} (NOT DONE)", outcome.description)
        },
        at,
        held,
        isolated: None,
    }
}

/// One membership change from `planner`, with a fault of kind `overlap` (planned among the
/// members before the change) in force while it runs.
async fn change(
    cluster: &mut Cluster,
    planner: &mut Planner,
    overlap: Option<FaultKind>,
    rng: &mut Rng,
    run_start: Instant,
    log: &impl Fn(Duration, &str),
    out: &mut Nemesis,
) -> std::io::Result<()> {
    if let Err(e) = membership::refresh(cluster, rng).await {
        log(run_start.elapsed(), &format!("no member table: {e}"));
        return Ok(());
    }
    for o in membership::promote_learners(cluster, rng).await {
        let at = run_start.elapsed();
        log(at, &o.description);
        out.records.push(change_record(o, at, Duration::ZERO));
    }
    let overlap = match overlap {
        Some(FaultKind::LostTail)
            if !may_lose_tail(cluster, run_start, log, &mut out.findings).await =>
        {
            None
        }
        o => o,
    };
    let leader = cluster.leader().await;
    let current = cluster.current();
    let next = planner.next(&current, &cluster.voters(), leader, rng);
    let fault = overlap.map(|kind| {
        let hold = Duration::from_millis(rng.range(1000, 5000));
        let mut f = plan(kind, &current, leader, hold, rng);
        compound(&mut f, &current, rng);
        f
    });
    let at = run_start.elapsed();
    let began = Instant::now();
    let damaged_before = cluster.tails.all().len();
    if let Some(f) = &fault {
        log(
            at,
            &format!("{} (while the next change runs)", f.description),
        );
        for (actions, _) in &f.steps {
            for &a in actions {
                apply(cluster, a)?;
            }
        }
    }
    let damage = damage_done(cluster, damaged_before);
    if !damage.is_empty() {
        log(at, &format!("lost tail{damage}"));
    }
    log(at, &format!("{next:?}"));
    let outcome = membership::execute(cluster, next, rng).await;
    let change_held = began.elapsed();
    if let Some(f) = &fault {
        tokio::time::sleep(f.duration().saturating_sub(began.elapsed())).await;
        for a in f.heal() {
            apply(cluster, a)?;
        }
        out.records.push(FaultRecord {
            kind: f.kind.name().to_string(),
            description: format!("{}{damage} (while a membership change ran)", f.description),
            at,
            held: began.elapsed(),
            isolated: None,
        });
    }
    log(run_start.elapsed(), &outcome.description);
    out.records.push(change_record(outcome, at, change_held));
    out.members_max = out.members_max.max(cluster.current().len());
    Ok(())
}

/// After the faults: heal, promote what is left a learner, shrink back to the initial size.
/// With nothing in the way, a change that cannot be finished is a finding.
async fn settle(
    cluster: &mut Cluster,
    planner: &Planner,
    rng: &mut Rng,
    run_start: Instant,
    log: &impl Fn(Duration, &str),
    out: &mut Nemesis,
) -> std::io::Result<()> {
    cluster.heal_all()?;
    let deadline = Instant::now() + membership::CHANGE_DEADLINE * 4;
    loop {
        if let Err(e) = membership::refresh(cluster, rng).await {
            if Instant::now() >= deadline {
                out.findings
                    .push(format!("membership: no member table after healing: {e}"));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        for o in membership::promote_learners(cluster, rng).await {
            let at = run_start.elapsed();
            log(at, &o.description);
            if !o.done {
                out.findings.push(format!(
                    "membership: with no fault in force: {}",
                    o.description
                ));
            }
            out.records.push(change_record(o, at, Duration::ZERO));
        }
        let leader = cluster.leader().await;
        let Some(next) = planner.shrink(&cluster.current(), leader, rng) else {
            return Ok(());
        };
        let at = run_start.elapsed();
        log(at, &format!("{next:?} (shrinking back)"));
        let began = Instant::now();
        let outcome = membership::execute(cluster, next, rng).await;
        log(run_start.elapsed(), &outcome.description);
        if !outcome.done {
            out.findings.push(format!(
                "membership: with no fault in force: {}",
                outcome.description
            ));
        }
        out.records
            .push(change_record(outcome, at, began.elapsed()));
        if Instant::now() >= deadline {
            out.findings.push(format!(
                "membership: not back to {} members within {:?} of healing",
                planner.min,
                membership::CHANGE_DEADLINE * 4
            ));
            return Ok(());
        }
    }
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
    let n = cluster.current().len();
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
    let n = cluster.current().len();
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
