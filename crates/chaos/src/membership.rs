//! Membership changes against a live cluster, through etcd's Cluster API as an operator
//! would: add a member (a learner, promoted once it caught up, or a voter at once), start
//! it, remove one (the leader too), replace one (remove, then add a new member: a removed
//! id is never reused, so the new one gets a new peer URL), move the leader.
//!
//! One change at a time. Any call may fail or time out, and a timed-out change may still
//! have happened (or happen later): after every call the harness reads the member table
//! (a linearizable read, then `MemberList`, at one member: [`Cluster::table`]) and goes by
//! it ([`Cluster::sync`] starts a member the table lists and removes from the clients' view
//! one it no longer lists). A change is retried until the table shows it done, or given up
//! after [`CHANGE_DEADLINE`]; the next change starts from the table again.

use crate::cluster::{Cluster, Standing};
use etcd_client::{Client, ConnectOptions, MemberAddOptions};
use std::future::Future;
use std::time::{Duration, Instant};
use synod_testkit::rng::Rng;

/// How long one change may take, retries included.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(20);
/// One call of the Cluster API.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Between retries.
const RETRY: Duration = Duration::from_millis(300);
/// How long after its removal a removed member is waited for to stop, before the next
/// change (the check that it did stop comes at the end of the run).
const STOP_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add a new member: a learner (promoted once caught up) or a voter at once.
    Add {
        learner: bool,
    },
    Remove {
        target: usize,
    },
    /// Put a new member in `target`'s place: remove it, then add the new one; or, with
    /// `add_first` (at the smallest size, where a removal first could leave no quorum should
    /// one more member be down), the other way round.
    Replace {
        target: usize,
        learner: bool,
        add_first: bool,
    },
    MoveLeader {
        to: usize,
    },
}

/// What a change did, for reports.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `member-add`, `member-remove`, `member-replace`, `move-leader`.
    pub kind: &'static str,
    pub description: String,
    /// The table shows it done (for a leader move: the target leads).
    pub done: bool,
}

/// The grow/shrink cycle: from `min` members add one at a time up to `max`, then remove one
/// at a time down to `min`, again and again; now and then a replacement or a leader move
/// instead.
#[derive(Clone, Debug)]
pub struct Planner {
    pub min: usize,
    pub max: usize,
    growing: bool,
}

impl Planner {
    pub fn new(min: usize, max: usize) -> Planner {
        Planner {
            min,
            max,
            growing: true,
        }
    }

    /// The next change for a cluster with these current members, voters and leader.
    pub fn next(
        &mut self,
        current: &[usize],
        voters: &[usize],
        leader: Option<usize>,
        rng: &mut Rng,
    ) -> Change {
        let size = current.len();
        if size >= self.max {
            self.growing = false;
        }
        if size <= self.min {
            self.growing = true;
        }
        // The leader half the time: removing or replacing it makes it hand over.
        let target = |rng: &mut Rng| match leader {
            Some(l) if rng.chance(0.5) => l,
            _ => rng.pick(current),
        };
        let draw = rng.below(100);
        let others: Vec<usize> = voters
            .iter()
            .copied()
            .filter(|&v| Some(v) != leader)
            .collect();
        if draw < 12 && leader.is_some() && !others.is_empty() {
            Change::MoveLeader {
                to: rng.pick(&others),
            }
        } else if draw < 24 && !current.is_empty() {
            Change::Replace {
                target: target(rng),
                learner: rng.chance(0.5),
                add_first: size <= self.min,
            }
        } else if self.growing || current.is_empty() {
            Change::Add {
                learner: rng.chance(0.6),
            }
        } else {
            Change::Remove {
                target: target(rng),
            }
        }
    }

    /// The change that brings the cluster closer to `min` members, if it has more.
    pub fn shrink(
        &self,
        current: &[usize],
        leader: Option<usize>,
        rng: &mut Rng,
    ) -> Option<Change> {
        if current.len() <= self.min {
            return None;
        }
        let target = match leader {
            Some(l) if rng.chance(0.5) => l,
            _ => rng.pick(current),
        };
        Some(Change::Remove { target })
    }
}

/// Reads the member table and brings the harness in line with it.
pub async fn refresh(cluster: &mut Cluster, rng: &mut Rng) -> Result<(), String> {
    let mut order = cluster.current();
    rng.shuffle(&mut order);
    let table = cluster.table(&order).await?;
    cluster.sync(&table).await
}

/// A current member that is up, at random (`None` if there is none).
fn via(cluster: &mut Cluster, rng: &mut Rng) -> Option<usize> {
    let up: Vec<usize> = cluster
        .current()
        .into_iter()
        .filter(|&i| cluster.members[i].is_serving())
        .collect();
    (!up.is_empty()).then(|| rng.pick(&up))
}

/// One call at `endpoint`, bounded by [`CALL_TIMEOUT`].
async fn call<T, F, Fut>(endpoint: String, f: F) -> Result<T, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let work = async move {
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT);
        let c = Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        f(c).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CALL_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

fn name(i: usize) -> String {
    crate::schedule::name(i)
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Runs one change to the end (or its deadline).
pub async fn execute(cluster: &mut Cluster, change: Change, rng: &mut Rng) -> Outcome {
    let began = Instant::now();
    let mut outcome = match change {
        Change::Add { learner } => {
            let (done, what) = add(cluster, learner, rng).await;
            Outcome {
                kind: "member-add",
                description: what,
                done,
            }
        }
        Change::Remove { target } => {
            let (done, what) = remove(cluster, target, rng).await;
            Outcome {
                kind: "member-remove",
                description: what,
                done,
            }
        }
        Change::Replace {
            target,
            learner,
            add_first,
        } => {
            let (first, mut what) = if add_first {
                add(cluster, learner, rng).await
            } else {
                remove(cluster, target, rng).await
            };
            let mut done = first;
            if first {
                let (second, more) = if add_first {
                    remove(cluster, target, rng).await
                } else {
                    add(cluster, learner, rng).await
                };
                done = second;
                what = format!("{what}; then {more}");
            }
            Outcome {
                kind: "member-replace",
                description: format!("replace: {what}"),
                done,
            }
        }
        Change::MoveLeader { to } => {
            let (done, what) = move_leader(cluster, to).await;
            Outcome {
                kind: "move-leader",
                description: what,
                done,
            }
        }
    };
    outcome.description += &format!(" [{}]", secs(began.elapsed()));
    outcome
}

/// Promotes the learners a change left behind (their promotion timed out, say).
pub async fn promote_learners(cluster: &mut Cluster, rng: &mut Rng) -> Vec<Outcome> {
    let mut out = Vec::new();
    for i in cluster.current() {
        if cluster.standing[i] == Standing::Learner {
            let began = Instant::now();
            let (done, what) = promote(cluster, i, began + CHANGE_DEADLINE, rng).await;
            out.push(Outcome {
                kind: "member-promote",
                description: format!("{what} [{}]", secs(began.elapsed())),
                done,
            });
        }
    }
    out
}

/// Adds a new member and starts it; a learner is promoted once it caught up.
async fn add(cluster: &mut Cluster, learner: bool, rng: &mut Rng) -> (bool, String) {
    let began = Instant::now();
    let deadline = began + CHANGE_DEADLINE;
    // The ids of the members that will dial the new one, for its front door's routes. Under
    // a fault the table may take a while (no leader yet): retried until the deadline.
    while let Err(e) = refresh(cluster, rng).await {
        if Instant::now() >= deadline {
            return (false, format!("add: no member table: {e}"));
        }
        tokio::time::sleep(RETRY).await;
    }
    let i = match cluster.new_member().await {
        Ok(i) => i,
        Err(e) => return (false, format!("add: could not prepare a member: {e}")),
    };
    let what = if learner { "learner" } else { "voter" };
    let url = cluster.peer_url(i).to_string();
    let mut last = String::new();
    loop {
        if let Some(v) = via(cluster, rng) {
            let url = url.clone();
            let options = learner.then(|| MemberAddOptions::new().with_is_learner());
            let r = call(cluster.endpoint(v), |mut c| async move {
                c.member_add([url], options).await
            })
            .await;
            if let Err(e) = r {
                last = format!("{} via {}", e, name(v));
            }
        }
        // Whatever the answer, the table says what happened (and `sync` starts the member).
        match refresh(cluster, rng).await {
            Ok(()) if cluster.standing[i] != Standing::Adding => break,
            Ok(()) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return (
                false,
                format!(
                    "add {} as {what}: not in the member table after {} (last: {last}); \
                     started if it lands later",
                    name(i),
                    secs(CHANGE_DEADLINE)
                ),
            );
        }
        tokio::time::sleep(RETRY).await;
    }
    let added = format!("add {} as {what} ({})", name(i), secs(began.elapsed()));
    if cluster.standing[i] != Standing::Learner || !learner {
        return (true, added);
    }
    let (promoted, more) = promote(cluster, i, deadline, rng).await;
    (promoted, format!("{added}, {more}"))
}

/// Whether member `i` answers a linearizable read (a learner that does has caught up far
/// enough to apply what the leader committed before the read).
async fn serves(cluster: &Cluster, i: usize) -> bool {
    call(cluster.endpoint(i), |mut c| async move {
        c.get("chaos/members", None).await
    })
    .await
    .is_ok()
}

async fn promote(
    cluster: &mut Cluster,
    i: usize,
    deadline: Instant,
    rng: &mut Rng,
) -> (bool, String) {
    let began = Instant::now();
    let mut last = String::from("it never served a read");
    loop {
        if cluster.standing[i] == Standing::Voter {
            return (
                true,
                format!("promoted {} ({} later)", name(i), secs(began.elapsed())),
            );
        }
        if cluster.standing[i] != Standing::Learner {
            return (
                false,
                format!("{} left the table before promotion", name(i)),
            );
        }
        if serves(cluster, i).await {
            if let (Some(v), Some(id)) = (via(cluster, rng), cluster.id(i)) {
                let r = call(cluster.endpoint(v), |mut c| async move {
                    c.member_promote(id).await
                })
                .await;
                if let Err(e) = r {
                    last = format!("{e} via {}", name(v));
                }
            }
        }
        if let Err(e) = refresh(cluster, rng).await {
            last = e;
        }
        if Instant::now() >= deadline && cluster.standing[i] == Standing::Learner {
            return (false, format!("{} still a learner (last: {last})", name(i)));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Removes `target` (through a random member: now and then itself), then waits a little for
/// it to stop.
async fn remove(cluster: &mut Cluster, target: usize, rng: &mut Rng) -> (bool, String) {
    let began = Instant::now();
    let deadline = began + CHANGE_DEADLINE;
    let leader = cluster.leader().await;
    let role = if leader == Some(target) {
        " (the leader)"
    } else if cluster.standing[target] == Standing::Learner {
        " (a learner)"
    } else {
        ""
    };
    let mut last = String::new();
    loop {
        if cluster.standing[target] == Standing::Removed {
            break;
        }
        let through = if rng.chance(0.2) && cluster.members[target].is_serving() {
            Some(target)
        } else {
            via(cluster, rng)
        };
        if let (Some(v), Some(id)) = (through, cluster.id(target)) {
            let r = call(cluster.endpoint(v), |mut c| async move {
                c.member_remove(id).await
            })
            .await;
            if let Err(e) = r {
                last = format!("{e} via {}", name(v));
            }
        }
        if let Err(e) = refresh(cluster, rng).await {
            last = e;
        }
        if cluster.standing[target] == Standing::Removed {
            break;
        }
        if Instant::now() >= deadline {
            return (
                false,
                format!(
                    "remove {}{role}: still in the member table after {} (last: {last})",
                    name(target),
                    secs(CHANGE_DEADLINE)
                ),
            );
        }
        tokio::time::sleep(RETRY).await;
    }
    let removed = began.elapsed();
    let stop_by = Instant::now() + STOP_WAIT;
    while cluster.members[target].is_running() && Instant::now() < stop_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = if cluster.members[target].is_running() {
        format!("still running {} later", secs(STOP_WAIT))
    } else {
        format!("stopped {} later", secs(began.elapsed() - removed))
    };
    (
        true,
        format!(
            "remove {}{role} ({}; {stopped})",
            name(target),
            secs(removed)
        ),
    )
}

/// Maintenance.MoveLeader at the leader, to `to`.
async fn move_leader(cluster: &mut Cluster, to: usize) -> (bool, String) {
    // Under a fault there may be no leader for a while (an election): waited for.
    let deadline = Instant::now() + CHANGE_DEADLINE;
    let leader = loop {
        if let Some(l) = cluster.leader().await {
            break l;
        }
        if Instant::now() >= deadline {
            return (false, format!("move leader to {}: no leader", name(to)));
        }
        tokio::time::sleep(RETRY).await;
    };
    if leader == to {
        return (true, format!("move leader: {} leads already", name(to)));
    }
    let Some(id) = cluster.id(to) else {
        return (false, format!("move leader to {}: id unknown", name(to)));
    };
    let r = call(cluster.endpoint(leader), |mut c| async move {
        c.move_leader(id).await
    })
    .await;
    match r {
        Ok(_) => (
            true,
            format!("move leader {} -> {}", name(leader), name(to)),
        ),
        Err(e) => (
            false,
            format!("move leader {} -> {}: {e}", name(leader), name(to)),
        ),
    }
}
