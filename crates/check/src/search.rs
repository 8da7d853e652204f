//! Lowe's variant of the Wing–Gong linearizability search, generic over the sequential
//! model, with memoization of (linearized set, state).
//!
//! An operation may take effect in several ways ([`Model::choices`]; say, a txn whose
//! compares the model cannot decide): each is a separate choice to backtrack over.
//!
//! An operation with an unknown outcome never returns: it may take effect at any point after
//! its invocation, or not at all. It is only linearized where it changes the state (one that
//! changes nothing is the same as one that never happened), and the search is done once
//! every *known* operation is linearized. Unknown operations the caller puts in one class are
//! interchangeable (same effect in every state), so they are used strictly in invocation
//! order: a linearization using a later one while an earlier one is unused can swap the two.

use foldhash::fast::FixedState;
use std::collections::HashSet;

/// A sequential specification.
pub trait Model {
    type Op;
    type Output;
    type State: Clone + PartialEq;

    /// In how many ways `op` may take effect (most operations: one).
    fn choices(&self, _op: &Self::Op, _output: Option<&Self::Output>) -> usize {
        1
    }

    /// The next state if `op` can take effect in `state` returning `output` (`None`:
    /// unknown outcome, any output goes), the `choice`-th way.
    fn step(
        &self,
        state: &Self::State,
        op: &Self::Op,
        output: Option<&Self::Output>,
        choice: usize,
    ) -> Option<Self::State>;

    /// 128 bits standing for the state in the memo table.
    fn fingerprint(&self, state: &Self::State) -> u128;
}

/// One operation as the search sees it. Times are positions in one order of invocations and
/// completions.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a, O, R> {
    pub invoke: u64,
    /// `None`: the outcome is unknown.
    pub complete: Option<(u64, &'a R)>,
    pub op: &'a O,
    /// Unknown operations of one class are interchangeable (see the module comment).
    pub class: Option<usize>,
    /// Among the operations that may go next, those with a lower `order` are tried first
    /// (a hint: where the operation likely goes, say by its revision).
    pub order: u64,
}

/// How many operations linearized last a failure reports, for context.
pub const RECENT_MAX: usize = 8;

/// Where a failed search got furthest: how many operations linearized at most, the
/// operation whose return ended that attempt (an index into the calls), the operations
/// linearized last before it (oldest first, at most [`RECENT_MAX`]), and the state then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deepest<S> {
    pub linearized: usize,
    pub culprit: usize,
    pub recent: Vec<usize>,
    pub state: S,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<S> {
    Linearizable,
    NotLinearizable(Deepest<S>),
    /// The step bound ran out first.
    GaveUp(Deepest<S>),
}

/// A doubly linked list of call and return entries in time order (index 0 is the head).
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per entry: the operation and whether it is its call.
    what: Vec<(usize, bool)>,
    /// Per operation: its call and return entry.
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl Entries {
    fn new<O, R>(calls: &[Call<'_, O, R>]) -> Entries {
        let mut events: Vec<(u64, usize, bool)> = Vec::with_capacity(2 * calls.len());
        for (i, c) in calls.iter().enumerate() {
            events.push((c.invoke, i, true));
            // Unknown outcomes return after everything, in a fixed order.
            let ret = c.complete.map_or(u64::MAX, |(t, _)| t);
            events.push((ret, i, false));
        }
        events.sort_unstable();
        let m = events.len();
        let mut e = Entries {
            next: (1..=m + 1).collect(),
            prev: (0..=m).map(|i| i.wrapping_sub(1)).collect(),
            what: vec![(0, false); m + 1],
            call: vec![0; calls.len()],
            ret: vec![0; calls.len()],
        };
        e.next[m] = 0;
        for (k, &(_, op, is_call)) in events.iter().enumerate() {
            e.what[k + 1] = (op, is_call);
            if is_call {
                e.call[op] = k + 1;
            } else {
                e.ret[op] = k + 1;
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != 0 {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != 0 {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        self.unlink(self.ret[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.ret[op]);
        self.relink(self.call[op]);
    }
}

/// A 128-bit random key per operation: the linearized set is identified by the XOR of its
/// members' keys (Zobrist hashing), so a cache entry costs O(1) instead of a bitset copy. A
/// false cache hit needs two sets colliding on 128 random bits.
fn zobrist(op: usize) -> u128 {
    let mut x = op as u64 ^ 0x5A0B_2157;
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (u128::from(next()) << 64) | u128::from(next())
}

/// Lowe's variant of the Wing–Gong search: linearize one of the calls that may go next
/// (those before the first pending return), backtrack when none can, and never revisit a
/// (linearized set, state) pair. Gives up after `steps_max` steps (a step: one try of an
/// operation, or one dead end).
pub fn search<M: Model>(
    model: &M,
    initial: M::State,
    calls: &[Call<'_, M::Op, M::Output>],
    steps_max: u64,
) -> Outcome<M::State> {
    let mut entries = Entries::new(calls);
    let keys: Vec<u128> = (0..calls.len()).map(zobrist).collect();
    // Per class, its operations in invocation order; per operation, its rank there.
    let classes = calls
        .iter()
        .filter_map(|c| c.class)
        .max()
        .map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, c) in calls.iter().enumerate() {
        if let Some(class) = c.class {
            by_class[class].push(i);
        }
    }
    let mut rank = vec![0usize; calls.len()];
    for members in &mut by_class {
        members.sort_by_key(|&i| calls[i].invoke);
        for (r, &i) in members.iter().enumerate() {
            rank[i] = r;
        }
    }
    let mut used = vec![0usize; classes];
    let mut done: u128 = 0;
    let mut cache: HashSet<(u128, u128), _> = HashSet::with_hasher(FixedState::default());
    // (the candidate taken, its index among the node's candidates, its choice, the state
    // before it)
    let mut stack: Vec<(usize, usize, usize, M::State)> = Vec::new();
    let mut state = initial;
    let mut deepest: Option<Deepest<M::State>> = None;
    // Where to resume among the current node's candidates: (index, choice).
    let mut resume = (0, 0);
    let mut candidates: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    'nodes: loop {
        // The calls that may go next, known ones first; and the first pending return.
        candidates.clear();
        let mut e = entries.next[0];
        while e != 0 && entries.what[e].1 {
            candidates.push(entries.what[e].0);
            e = entries.next[e];
        }
        if e == 0 || calls[entries.what[e].0].complete.is_none() {
            // Every known operation is in; unknown ones may all take effect later or never.
            return Outcome::Linearizable;
        }
        let blocking = entries.what[e].0;
        // Ties in list order (by invocation), as a stable sort would leave them, without
        // the stable sort's allocation at every node.
        candidates.sort_unstable_by_key(|&op| {
            let c = &calls[op];
            (c.complete.is_none(), c.order, c.invoke, op)
        });
        let (from, mut first_choice) = std::mem::take(&mut resume);
        for (index, &op) in candidates.iter().enumerate().skip(from) {
            let choice_from = std::mem::take(&mut first_choice);
            let c = &calls[op];
            if c.class.is_some_and(|class| rank[op] != used[class]) {
                continue;
            }
            let output = c.complete.map(|(_, r)| r);
            for choice in choice_from..model.choices(c.op, output) {
                steps += 1;
                if steps > steps_max {
                    let d = deepest.unwrap_or_else(|| report(&stack, blocking, &state));
                    return Outcome::GaveUp(d);
                }
                let Some(next) = model.step(&state, c.op, output, choice) else {
                    continue;
                };
                // An unknown operation that changes nothing is the same as none at all.
                if c.complete.is_none() && next == state {
                    continue;
                }
                if cache.insert((done ^ keys[op], model.fingerprint(&next))) {
                    done ^= keys[op];
                    if let Some(class) = c.class {
                        used[class] += 1;
                    }
                    stack.push((op, index, choice, std::mem::replace(&mut state, next)));
                    entries.lift(op);
                    continue 'nodes;
                }
            }
        }
        // A dead end: nothing can go before `blocking` returns.
        steps += 1;
        if deepest.as_ref().is_none_or(|d| stack.len() >= d.linearized) {
            deepest = Some(report(&stack, blocking, &state));
        }
        let Some((last, index, choice, before)) = stack.pop() else {
            return Outcome::NotLinearizable(
                deepest.unwrap_or_else(|| report(&stack, blocking, &state)),
            );
        };
        state = before;
        done ^= keys[last];
        if let Some(class) = calls[last].class {
            used[class] -= 1;
        }
        entries.unlift(last);
        resume = (index, choice + 1);
    }
}

fn report<S: Clone>(stack: &[(usize, usize, usize, S)], culprit: usize, state: &S) -> Deepest<S> {
    let recent = &stack[stack.len().saturating_sub(RECENT_MAX)..];
    Deepest {
        linearized: stack.len(),
        culprit,
        recent: recent.iter().map(|s| s.0).collect(),
        state: state.clone(),
    }
}
