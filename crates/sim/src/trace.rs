//! The readable event trace of one seed (`--seed S --trace`): one line per event, with the
//! simulated time, the actor and what happened. Formatting is skipped entirely when tracing
//! is off, which is how every seed but a replayed one runs.

use synod_paxos::{Body, Message, Value};

#[derive(Debug, Default)]
enum Sink {
    #[default]
    Off,
    Stdout,
    /// Kept in memory: tests compare two runs of a seed line by line (determinism).
    Capture(Vec<String>),
}

#[derive(Debug, Default)]
pub struct Trace {
    sink: Sink,
}

impl Trace {
    pub fn off() -> Trace {
        Trace { sink: Sink::Off }
    }

    pub fn stdout() -> Trace {
        Trace { sink: Sink::Stdout }
    }

    pub fn capture() -> Trace {
        Trace {
            sink: Sink::Capture(Vec::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Records one event; `what` is only evaluated when tracing.
    pub fn emit(&mut self, now_us: u64, who: &str, what: impl FnOnce() -> String) {
        if !self.enabled() {
            return;
        }
        let line = format!(
            "{:>5}.{:03}ms {who:<6} {}",
            now_us / 1000,
            now_us % 1000,
            what()
        );
        match &mut self.sink {
            Sink::Off => {}
            Sink::Stdout => println!("{line}"),
            Sink::Capture(lines) => lines.push(line),
        }
    }

    /// The captured lines (empty unless created with [`Trace::capture`]).
    pub fn into_lines(self) -> Vec<String> {
        match self.sink {
            Sink::Capture(lines) => lines,
            _ => Vec::new(),
        }
    }
}

thread_local! {
    /// Short names of this thread's simulated nodes: "n<k>" by creation order, since the ids
    /// of added members are hashes of their peer URLs (as the server derives them).
    static NODE_NAMES: std::cell::RefCell<std::collections::BTreeMap<u64, String>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Names nodes in the order given, after those named before (a new seed starts over when
/// given id 1 again).
pub fn name_nodes(ids: impl IntoIterator<Item = u64>) {
    NODE_NAMES.with(|names| {
        let mut names = names.borrow_mut();
        for id in ids {
            if id == 1 {
                names.clear();
            }
            let k = names.len() + 1;
            names.entry(id).or_insert_with(|| format!("n{k}"));
        }
    })
}

/// "n3"-style actor names.
pub fn node_name(id: u64) -> String {
    NODE_NAMES
        .with(|names| names.borrow().get(&id).cloned())
        .unwrap_or_else(|| format!("n{id}"))
}

/// A message with the fields that matter when reading a trace.
pub fn describe(m: &Message) -> String {
    format!("{}->{} {}", m.from, m.to, describe_body(&m.body))
}

fn describe_body(body: &Body) -> String {
    let kind = body.kind();
    match body {
        Body::PreVote { ballot, commit } => format!("{kind} b={ballot} commit={commit}"),
        Body::PreVoteReply { ballot, granted } => format!("{kind} b={ballot} granted={granted}"),
        Body::Prepare {
            ballot,
            first_slot,
            transfer_from,
        } => match transfer_from {
            Some(t) => format!("{kind} b={ballot} from={first_slot} handed-over-from={t}"),
            None => format!("{kind} b={ballot} from={first_slot}"),
        },
        Body::TimeoutNow { ballot } => format!("{kind} b={ballot}"),
        Body::Promise {
            ballot,
            first_slot,
            accepted,
        } => format!(
            "{kind} b={ballot} from={first_slot} accepted={}",
            accepted.len()
        ),
        Body::Accept {
            ballot,
            first_slot,
            values,
            commit,
        } => format!(
            "{kind} b={ballot} slots={first_slot}..{} commit={commit} [{}]",
            (first_slot + values.len() as u64).saturating_sub(1),
            values
                .iter()
                .map(|v| describe_value(v))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Body::Accepted {
            ballot,
            first_slot,
            last_slot,
            commit,
        } => format!("{kind} b={ballot} slots={first_slot}..{last_slot} commit={commit}"),
        Body::Nack { rejected, promised } => {
            format!("{kind} rejected={rejected} promised={promised}")
        }
        Body::Heartbeat {
            ballot,
            commit,
            round,
        } => format!("{kind} b={ballot} commit={commit} round={round}"),
        Body::HeartbeatReply {
            ballot,
            round,
            commit,
        } => format!("{kind} b={ballot} round={round} commit={commit}"),
        Body::Commit { ballot, commit } => format!("{kind} b={ballot} commit={commit}"),
        Body::Learn { first_slot, values } => {
            format!("{kind} from={first_slot} n={}", values.len())
        }
        Body::LearnReply { commit } => format!("{kind} commit={commit}"),
        Body::Forward { commands } => format!(
            "{kind} [{}]",
            commands
                .iter()
                .map(|c| format!("c{}#{}", c.client_id, c.seq))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Body::ReadIndex { request } => format!("{kind} req={request}"),
        Body::ReadIndexReply {
            request,
            read_index,
        } => format!("{kind} req={request} index={read_index:?}"),
        Body::SnapshotChunk {
            slot,
            total,
            offset,
            data,
        } => format!(
            "{kind} slot={slot} bytes={offset}..{} of {total}",
            offset + data.len() as u64
        ),
        Body::RecoveryQuery { nonce } => format!("{kind} nonce={nonce:x}"),
        Body::RecoveryReply {
            nonce,
            promised,
            voters,
            leader,
        } => format!(
            "{kind} nonce={nonce:x} promised={promised} voters={voters:?} leader={leader:?}"
        ),
        Body::App { data } => format!("{kind} bytes={}", data.len()),
    }
}

/// A slot's value in a few characters: `noop`, `members`, or the commands' (client#seq).
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Noop => "noop".to_string(),
        Value::Membership(m) => format!("members{:?}", m.voters()),
        Value::Commands(cs) => {
            let names: Vec<String> = cs
                .iter()
                .take(8)
                .map(|c| format!("c{}#{}", c.client_id, c.seq))
                .collect();
            let more = if cs.len() > 8 {
                format!(" +{}", cs.len() - 8)
            } else {
                String::new()
            };
            format!("{{{}{more}}}", names.join(","))
        }
    }
}
