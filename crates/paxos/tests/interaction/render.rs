//! Compact, deterministic one-line renderings of the engine's public types for the golden
//! traces. Every field a reviewer needs to check the protocol is shown; nothing depends on
//! addresses, hash order or the clock.

use synod_paxos::{Body, Command, HardState, LogRecord, Message, PromisedSlot, Value};

/// `noop`, `members{1,2,3}`, or a command batch `{7.1:x 7.2}` (client.seq:payload).
pub fn value(v: &Value) -> String {
    match v {
        Value::Noop => "noop".to_string(),
        Value::Membership(m) => {
            let ids: Vec<String> = m.voters().iter().map(u64::to_string).collect();
            format!("members{{{}}}", ids.join(","))
        }
        Value::Commands(commands) => {
            let cs: Vec<String> = commands.iter().map(command).collect();
            format!("{{{}}}", cs.join(" "))
        }
    }
}

fn command(c: &Command) -> String {
    if c.payload.is_empty() {
        format!("{}.{}", c.client_id, c.seq)
    } else {
        format!(
            "{}.{}:{}",
            c.client_id,
            c.seq,
            String::from_utf8_lossy(&c.payload)
        )
    }
}

fn values<V: std::ops::Deref<Target = Value>>(vs: &[V]) -> String {
    let rendered: Vec<String> = vs.iter().map(|v| value(v)).collect();
    format!("[{}]", rendered.join(", "))
}

/// `slot=5` or `slots=5..7` (inclusive).
fn slots(first: u64, last: u64) -> String {
    if first >= last {
        format!("slot={first}")
    } else {
        format!("slots={first}..{last}")
    }
}

/// `2@1.1 noop`: slot 2 holds noop accepted under ballot 1.1; `chosen` when known chosen.
fn slot_value(slot: u64, ballot: impl std::fmt::Display, chosen: bool, v: &Value) -> String {
    let chosen = if chosen { " chosen" } else { "" };
    format!("{slot}@{ballot}{chosen} {}", value(v))
}

pub fn record(r: &LogRecord) -> String {
    slot_value(r.slot, r.ballot, r.chosen, &r.value)
}

fn promised_slot(p: &PromisedSlot) -> String {
    slot_value(p.slot, p.ballot, p.chosen, &p.value)
}

pub fn hard_state(h: &HardState) -> String {
    format!("promised={} commit={}", h.promised, h.commit)
}

pub fn message(m: &Message) -> String {
    format!("{}->{} {}", m.from, m.to, body(&m.body))
}

pub fn body(b: &Body) -> String {
    match b {
        Body::PreVote { ballot, commit } => format!("PreVote b={ballot} commit={commit}"),
        Body::PreVoteReply { ballot, granted } => {
            let verdict = if *granted { "granted" } else { "refused" };
            format!("PreVoteReply b={ballot} {verdict}")
        }
        Body::Prepare {
            ballot,
            first_slot,
            transfer_from: None,
        } => format!("Prepare b={ballot} first={first_slot}"),
        Body::Prepare {
            ballot,
            first_slot,
            transfer_from: Some(from),
        } => format!("Prepare b={ballot} first={first_slot} transfer_from={from}"),
        Body::TimeoutNow { ballot } => format!("TimeoutNow b={ballot}"),
        Body::Promise {
            ballot,
            first_slot,
            accepted,
        } => {
            let acc: Vec<String> = accepted.iter().map(promised_slot).collect();
            format!(
                "Promise b={ballot} first={first_slot} accepted=[{}]",
                acc.join(", ")
            )
        }
        Body::Accept {
            ballot,
            first_slot,
            values: vs,
            commit,
        } => {
            let last = first_slot + (vs.len() as u64).saturating_sub(1);
            format!(
                "Accept b={ballot} {} commit={commit} values={}",
                slots(*first_slot, last),
                values(vs)
            )
        }
        Body::Accepted {
            ballot,
            first_slot,
            last_slot,
            commit,
        } => format!(
            "Accepted b={ballot} {} commit={commit}",
            slots(*first_slot, *last_slot)
        ),
        Body::Nack { rejected, promised } => {
            format!("Nack rejected={rejected} promised={promised}")
        }
        Body::Heartbeat {
            ballot,
            commit,
            round,
        } => format!("Heartbeat b={ballot} commit={commit} round={round}"),
        Body::HeartbeatReply {
            ballot,
            round,
            commit,
        } => format!("HeartbeatReply b={ballot} round={round} commit={commit}"),
        Body::Commit { ballot, commit } => format!("Commit b={ballot} commit={commit}"),
        Body::Learn {
            first_slot,
            values: vs,
        } => {
            let last = first_slot + (vs.len() as u64).saturating_sub(1);
            format!("Learn {} values={}", slots(*first_slot, last), values(vs))
        }
        Body::LearnReply { commit } => format!("LearnReply commit={commit}"),
        Body::Forward { commands } => {
            format!("Forward {}", value(&Value::Commands(commands.clone())))
        }
        Body::ReadIndex { request } => format!("ReadIndex req={request}"),
        Body::ReadIndexReply {
            request,
            read_index,
        } => match read_index {
            Some(i) => format!("ReadIndexReply req={request} index={i}"),
            None => format!("ReadIndexReply req={request} index=none"),
        },
        Body::SnapshotChunk {
            slot,
            total,
            offset,
            data,
        } => format!(
            "SnapshotChunk slot={slot} bytes={offset}..{} of {total}",
            offset + data.len() as u64
        ),
        Body::RecoveryQuery { nonce } => format!("RecoveryQuery nonce={nonce:x}"),
        Body::RecoveryReply {
            nonce,
            promised,
            voters,
            leader,
        } => match leader {
            Some((ballot, frontier)) => format!(
                "RecoveryReply nonce={nonce:x} promised={promised} voters={voters:?} leader={ballot} frontier={frontier}"
            ),
            None => format!("RecoveryReply nonce={nonce:x} promised={promised} voters={voters:?}"),
        },
        Body::App { data } => format!("App bytes={}", data.len()),
    }
}
