//! Fault schedules: what to break, as steps of primitive actions. Healing is derived from
//! what a fault touched (restart what it killed, resume what it paused, pass what it cut),
//! so a fault cannot forget to undo itself.
//!
//! The partial-connectivity scenarios are the ones of Howard & Abraham ("Raft does not
//! guarantee liveness in the face of network faults", 2020) and of the 2020 Cloudflare
//! outage, where a node reaches only some of its peers:
//! - quorum loss: the leader reaches only one peer, which reaches everyone;
//! - constrained election: a lagging node becomes the only one connected to all others;
//! - chained: the members form a chain, each reaching only its neighbours.

use crate::proxy::LinkMode;
use std::fmt;
use std::time::Duration;
use synod_testkit::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 a member (the leader half the time), restart it later.
    Kill,
    /// SIGSTOP a member (the leader half the time), SIGCONT it later.
    Pause,
    /// Two sides, all links between them cut both ways.
    Partition,
    /// Links cut one way only: a member that cannot hear, or cannot speak, or random links.
    OneWay,
    /// Every link to and from the leader cut (clients still reach it).
    LeaderIsolated,
    QuorumLoss,
    ConstrainedElection,
    Chained,
    /// Frame loss and delay on some links.
    Flaky,
    /// Connections reset again and again.
    Resets,
    /// kill -9 a member (the leader half the time), destroy the synced tail of its
    /// write-ahead log ([`TailDamage`]), restart it: it must recover from its peers before
    /// it votes or serves (docs/PROTOCOL.md, "Recovery from a lost log tail"). Never while
    /// another member is still recovering from one (`nemesis.rs`): a majority without its
    /// tails may lose chosen values, which no protocol survives.
    LostTail,
    /// A membership change (add a learner or a voter, promote, remove, replace, move the
    /// leader: `membership.rs`). Not among [`ALL_FAULTS`]: asked for by name, or by the
    /// membership scenario.
    Membership,
}

pub const ALL_FAULTS: [FaultKind; 11] = [
    FaultKind::Kill,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::OneWay,
    FaultKind::LeaderIsolated,
    FaultKind::QuorumLoss,
    FaultKind::ConstrainedElection,
    FaultKind::Chained,
    FaultKind::Flaky,
    FaultKind::Resets,
    FaultKind::LostTail,
];

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::LeaderIsolated => "leader-isolated",
            FaultKind::QuorumLoss => "quorum-loss",
            FaultKind::ConstrainedElection => "constrained-election",
            FaultKind::Chained => "chained",
            FaultKind::Flaky => "flaky",
            FaultKind::Resets => "resets",
            FaultKind::LostTail => "lost-tail",
            FaultKind::Membership => "membership",
        }
    }

    pub fn parse(name: &str) -> Option<FaultKind> {
        ALL_FAULTS
            .into_iter()
            .chain([FaultKind::Membership])
            .find(|k| k.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a stopped member's newest write-ahead log segment holding data is damaged (the
/// parameters are drawn with the schedule, so a seed fixes them; `tail.rs` applies them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailDamage {
    /// Cut the segment inside its data, keeping this many thousandths of the data (after the
    /// segment's header; at least one byte of it).
    Truncate { keep_permille: u16 },
    /// Delete the segment.
    Delete,
    /// Flip one bit of the byte this far before the end of the data (its last non-zero
    /// byte): within the last frame, so that no good frame follows the damage.
    Flip { back: u8 },
}

impl TailDamage {
    /// One of the three ways, at random.
    pub fn random(rng: &mut Rng) -> TailDamage {
        match rng.below(3) {
            0 => TailDamage::Truncate {
                keep_permille: rng.below(1000) as u16,
            },
            1 => TailDamage::Delete,
            _ => TailDamage::Flip {
                back: rng.below(8) as u8,
            },
        }
    }
}

impl fmt::Display for TailDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TailDamage::Truncate { keep_permille } => write!(
                f,
                "truncate its newest WAL segment to {:.1}% of its data",
                f64::from(*keep_permille) / 10.0
            ),
            TailDamage::Delete => f.write_str("delete its newest WAL segment"),
            TailDamage::Flip { back } => write!(
                f,
                "flip a bit {} byte(s) before the end of its newest WAL segment's data",
                back + 1
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    Kill(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
    Link(usize, usize, LinkMode),
    Reset(usize, usize),
    /// Damage the log of a member that is down (`Kill` it first, in the same step).
    LoseTail(usize, TailDamage),
}

/// A fault: steps of actions, each followed by a wait; then its heal.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub description: String,
    pub steps: Vec<(Vec<Action>, Duration)>,
}

impl Fault {
    pub fn duration(&self) -> Duration {
        self.steps.iter().map(|s| s.1).sum()
    }

    /// What undoes this fault, in order.
    pub fn heal(&self) -> Vec<Action> {
        let mut heal = Vec::new();
        for action in self.steps.iter().flat_map(|s| s.0.iter()) {
            let undo = match *action {
                Action::Kill(i) => Action::Restart(i),
                Action::Pause(i) => Action::Resume(i),
                Action::Link(a, b, _) => Action::Link(a, b, LinkMode::Pass),
                // Nothing brings a lost tail back: the member recovers it from its peers.
                Action::Restart(_)
                | Action::Resume(_)
                | Action::Reset(..)
                | Action::LoseTail(..) => continue,
            };
            if !heal.contains(&undo) {
                heal.push(undo);
            }
        }
        heal
    }
}

/// Member names as in the cluster (`m1`, ...).
pub fn name(i: usize) -> String {
    format!("m{}", i + 1)
}

fn names(set: &[usize]) -> String {
    set.iter().map(|&i| name(i)).collect::<Vec<_>>().join(",")
}

/// Both directions of every link between `a` and `b`.
fn cut_between(a: &[usize], b: &[usize]) -> Vec<Action> {
    let mut actions = Vec::new();
    for &x in a {
        for &y in b {
            if x != y {
                actions.push(Action::Link(x, y, LinkMode::Blackhole));
                actions.push(Action::Link(y, x, LinkMode::Blackhole));
            }
        }
    }
    actions
}

/// Cut every link among `all` except those between the given pairs.
fn keep_only(all: &[usize], keep: &[(usize, usize)]) -> Vec<Action> {
    let mut actions = Vec::new();
    for &x in all {
        for &y in all {
            let kept = keep.contains(&(x, y)) || keep.contains(&(y, x));
            if x != y && !kept {
                actions.push(Action::Link(x, y, LinkMode::Blackhole));
            }
        }
    }
    actions
}

/// A fault of `kind` among the members `members` (at least 3; indices as in the cluster),
/// whose leader is `leader` (if known), held for about `hold`.
pub fn plan(
    kind: FaultKind,
    members: &[usize],
    leader: Option<usize>,
    hold: Duration,
    rng: &mut Rng,
) -> Fault {
    let all: Vec<usize> = members.to_vec();
    let n = all.len();
    let random = |rng: &mut Rng| rng.pick(&all);
    let leader = leader.filter(|l| all.contains(l));
    // The leader half of the time: faults at the leader are the interesting ones.
    let target = |rng: &mut Rng| match leader {
        Some(l) if rng.chance(0.5) => l,
        _ => random(rng),
    };
    let lead = leader.unwrap_or(all[0]);
    let one = |actions: Vec<Action>, description: String| Fault {
        kind,
        description,
        steps: vec![(actions, hold)],
    };
    match kind {
        FaultKind::Kill => {
            let x = target(rng);
            // A third are quick bounces: the new incarnation meets its predecessor's traffic.
            let hold = if rng.chance(0.33) {
                Duration::from_millis(rng.range(0, 300))
            } else {
                hold
            };
            Fault {
                kind,
                description: format!("kill -9 {}", name(x)),
                steps: vec![(vec![Action::Kill(x)], hold)],
            }
        }
        FaultKind::LostTail => {
            let x = target(rng);
            let how = TailDamage::random(rng);
            // Down as long as a `kill`, a third only briefly.
            let hold = if rng.chance(0.33) {
                Duration::from_millis(rng.range(0, 300))
            } else {
                hold
            };
            Fault {
                kind,
                description: format!("kill -9 {}, {how}, restart it", name(x)),
                steps: vec![(vec![Action::Kill(x), Action::LoseTail(x, how)], hold)],
            }
        }
        FaultKind::Pause => {
            let x = target(rng);
            one(vec![Action::Pause(x)], format!("SIGSTOP {}", name(x)))
        }
        FaultKind::Partition => {
            let mut order = all.clone();
            rng.shuffle(&mut order);
            let minority = rng.range(1, ((n - 1) / 2) as u64) as usize;
            let (a, b) = order.split_at(minority);
            one(
                cut_between(a, b),
                format!("partition {} | {}", names(a), names(b)),
            )
        }
        FaultKind::OneWay => {
            let x = target(rng);
            let others: Vec<usize> = all.iter().copied().filter(|&o| o != x).collect();
            match rng.below(3) {
                0 => one(
                    others
                        .iter()
                        .map(|&o| Action::Link(o, x, LinkMode::Blackhole))
                        .collect(),
                    format!("{} hears nobody (sends fine)", name(x)),
                ),
                1 => one(
                    others
                        .iter()
                        .map(|&o| Action::Link(x, o, LinkMode::Blackhole))
                        .collect(),
                    format!("{} reaches nobody (hears fine)", name(x)),
                ),
                _ => {
                    let mut links = Vec::new();
                    for &a in &all {
                        for &b in &all {
                            if a != b && rng.chance(0.3) {
                                links.push(Action::Link(a, b, LinkMode::Blackhole));
                            }
                        }
                    }
                    let description = format!(
                        "one-way cuts {}",
                        links
                            .iter()
                            .filter_map(|l| match l {
                                Action::Link(a, b, _) =>
                                    Some(format!("{}->{}", name(*a), name(*b))),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    one(links, description)
                }
            }
        }
        FaultKind::LeaderIsolated => {
            let others: Vec<usize> = all.iter().copied().filter(|&o| o != lead).collect();
            one(
                cut_between(&[lead], &others),
                format!("leader {} isolated from its peers", name(lead)),
            )
        }
        FaultKind::QuorumLoss => {
            let mut others: Vec<usize> = all.iter().copied().filter(|&o| o != lead).collect();
            rng.shuffle(&mut others);
            let (bridge, rest) = others.split_at(1);
            one(
                cut_between(&[lead], rest),
                format!(
                    "quorum loss: leader {} reaches only {}, which reaches all",
                    name(lead),
                    name(bridge[0])
                ),
            )
        }
        FaultKind::ConstrainedElection => {
            let others: Vec<usize> = all.iter().copied().filter(|&o| o != lead).collect();
            let x = rng.pick(&others);
            let rest: Vec<usize> = all.iter().copied().filter(|&o| o != x).collect();
            // First it falls behind, then it is the only member reaching everyone.
            let lag = Duration::from_millis(rng.range(500, 1500));
            let mut star = vec![];
            for &a in &rest {
                star.push(Action::Link(x, a, LinkMode::Pass));
                star.push(Action::Link(a, x, LinkMode::Pass));
            }
            star.extend(cut_between(&rest, &rest));
            Fault {
                kind,
                description: format!(
                    "constrained election: {} lags, then only it reaches the others",
                    name(x)
                ),
                steps: vec![(cut_between(&[x], &rest), lag), (star, hold)],
            }
        }
        FaultKind::Chained => {
            let mut chain = all.clone();
            rng.shuffle(&mut chain);
            if leader.is_some() && rng.chance(0.5) {
                // The classic case: the leader at one end.
                let at = chain.iter().position(|&c| c == lead).unwrap_or(0);
                chain.swap(0, at);
            }
            let pairs: Vec<(usize, usize)> = chain.windows(2).map(|w| (w[0], w[1])).collect();
            one(
                keep_only(&all, &pairs),
                format!(
                    "chained: {}",
                    chain
                        .iter()
                        .map(|&c| name(c))
                        .collect::<Vec<_>>()
                        .join(" - ")
                ),
            )
        }
        FaultKind::Flaky => {
            let mut actions = Vec::new();
            let mut parts = Vec::new();
            for &a in &all {
                for &b in &all {
                    if a == b || !rng.chance(0.5) {
                        continue;
                    }
                    let mode = if rng.chance(0.5) {
                        LinkMode::Drop(rng.range(10, 60) as f64 / 100.0)
                    } else {
                        LinkMode::Delay(Duration::from_millis(rng.range(5, 150)))
                    };
                    parts.push(format!("{}->{} {mode}", name(a), name(b)));
                    actions.push(Action::Link(a, b, mode));
                }
            }
            one(actions, format!("flaky links: {}", parts.join(", ")))
        }
        FaultKind::Resets => {
            let every = Duration::from_millis(rng.range(100, 500));
            let rounds = (hold.as_millis() / every.as_millis()).max(1) as usize;
            let steps = (0..rounds)
                .map(|_| {
                    let a = rng.below(n as u64) as usize;
                    let b = (a + rng.range(1, n as u64 - 1) as usize) % n;
                    let (a, b) = (all[a], all[b]);
                    (vec![Action::Reset(a, b), Action::Reset(b, a)], every)
                })
                .collect();
            Fault {
                kind,
                description: format!("connection resets every {}ms", every.as_millis()),
                steps,
            }
        }
        // Not a fault of links and processes: `nemesis` runs membership changes itself.
        FaultKind::Membership => Fault {
            kind,
            description: "membership change".into(),
            steps: Vec::new(),
        },
    }
}

/// Sometimes a second, node-level fault on top of a network one: faults come in bunches.
pub fn compound(fault: &mut Fault, members: &[usize], rng: &mut Rng) {
    let network = !matches!(
        fault.kind,
        FaultKind::Kill | FaultKind::Pause | FaultKind::LostTail | FaultKind::Membership
    );
    if !network || !rng.chance(0.25) {
        return;
    }
    let x = rng.pick(members);
    let (action, what) = if rng.chance(0.5) {
        (Action::Kill(x), "kill -9")
    } else {
        (Action::Pause(x), "SIGSTOP")
    };
    let last = fault.steps.len() - 1;
    fault.steps[last].0.push(action);
    fault.description += &format!(", and {what} {}", name(x));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every planned fault, injected then healed, leaves every link passing and every member
    /// running: a fault cannot outlive itself.
    #[test]
    fn heal_undoes_every_fault() {
        let mut rng = Rng::new(5);
        const EVER: usize = 8;
        for _ in 0..2000 {
            // The current members: the first few, or (after membership changes) any 3 to 6
            // of the members ever created.
            let mut members: Vec<usize> = (0..EVER).collect();
            let n = rng.range(3, 6) as usize;
            if rng.chance(0.5) {
                rng.shuffle(&mut members);
            }
            members.truncate(n);
            members.sort();
            let kind = rng.pick(&ALL_FAULTS);
            let leader = rng.chance(0.8).then(|| rng.pick(&members));
            let mut f = plan(kind, &members, leader, Duration::from_secs(2), &mut rng);
            compound(&mut f, &members, &mut rng);
            let mut links = vec![vec![LinkMode::Pass; EVER]; EVER];
            let mut down = [false; EVER];
            let actions = f.steps.iter().flat_map(|s| s.0.clone()).chain(f.heal());
            for a in actions {
                let touched = match a {
                    Action::Kill(i)
                    | Action::Pause(i)
                    | Action::Restart(i)
                    | Action::Resume(i)
                    | Action::LoseTail(i, _) => vec![i],
                    Action::Link(a, b, _) | Action::Reset(a, b) => vec![a, b],
                };
                assert!(
                    touched.iter().all(|t| members.contains(t)),
                    "{}: {a:?} outside {members:?}",
                    f.description
                );
                match a {
                    Action::Kill(i) | Action::Pause(i) => down[i] = true,
                    Action::Restart(i) | Action::Resume(i) => down[i] = false,
                    Action::Link(a, b, m) => {
                        assert_ne!(a, b, "{}", f.description);
                        links[a][b] = m;
                    }
                    Action::Reset(a, b) => assert_ne!(a, b),
                    // Only a member that is down has its log damaged.
                    Action::LoseTail(i, _) => assert!(down[i], "{}", f.description),
                }
            }
            assert!(down.iter().all(|d| !d), "{}", f.description);
            assert!(
                links.iter().flatten().all(|&m| m == LinkMode::Pass),
                "{}",
                f.description
            );
        }
    }

    #[test]
    fn partial_connectivity_scenarios_have_their_shape() {
        let mut rng = Rng::new(9);
        let hold = Duration::from_secs(1);
        // Quorum loss: the leader keeps exactly one peer.
        let five = [0, 1, 2, 3, 4];
        let f = plan(FaultKind::QuorumLoss, &five, Some(2), hold, &mut rng);
        let cut_from_leader = f.steps[0]
            .0
            .iter()
            .filter(|a| matches!(a, Action::Link(2, _, LinkMode::Blackhole)))
            .count();
        assert_eq!(cut_from_leader, 3, "{}", f.description);
        // Chained: a chain of 5 keeps 4 undirected links, so 20 - 8 directed links are cut.
        let f = plan(FaultKind::Chained, &five, Some(0), hold, &mut rng);
        assert_eq!(f.steps[0].0.len(), 12, "{}", f.description);
        // Constrained election: first a lag, then a star.
        let f = plan(
            FaultKind::ConstrainedElection,
            &[0, 1, 2],
            Some(0),
            hold,
            &mut rng,
        );
        assert_eq!(f.steps.len(), 2);
    }

    /// A lost tail: one member killed, its log damaged while it is down, restarted; no second
    /// fault on top (a compound kill could take a second member's vote away while the first
    /// still recovers, which is fine, but never a second tail).
    #[test]
    fn lost_tail_damages_one_member_while_it_is_down() {
        let mut rng = Rng::new(3);
        let mut seen = [false; 3];
        for _ in 0..200 {
            let mut f = plan(
                FaultKind::LostTail,
                &[0, 1, 2],
                Some(1),
                Duration::from_secs(1),
                &mut rng,
            );
            compound(&mut f, &[0, 1, 2], &mut rng);
            assert_eq!(f.steps.len(), 1, "{}", f.description);
            let [Action::Kill(x), Action::LoseTail(y, how)] = f.steps[0].0[..] else {
                panic!("{}: {:?}", f.description, f.steps);
            };
            assert_eq!(x, y, "{}", f.description);
            assert_eq!(f.heal(), vec![Action::Restart(x)]);
            seen[match how {
                TailDamage::Truncate { keep_permille } => {
                    assert!(keep_permille < 1000);
                    0
                }
                TailDamage::Delete => 1,
                TailDamage::Flip { back } => {
                    assert!(back < 8);
                    2
                }
            }] = true;
        }
        assert_eq!(seen, [true; 3], "every way of damage is drawn");
    }

    #[test]
    fn names_round_trip() {
        for k in ALL_FAULTS.into_iter().chain([FaultKind::Membership]) {
            assert_eq!(FaultKind::parse(k.name()), Some(k));
        }
    }
}
