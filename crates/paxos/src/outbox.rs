//! Output accumulated between two `Ready`s, and the sequencing of persistence: which
//! messages (including a node's messages to itself) wait for which write to be durable.

use crate::message::Message;
use crate::ready::{AppMessage, HardState, LogRecord, ReadError, ReadId, Ready, SnapshotChunk};
use crate::types::NodeId;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    id: NodeId,
    messages: Vec<Message>,
    after_persist: Vec<Message>,
    records: Vec<LogRecord>,
    /// The hard state last handed out for persistence.
    emitted: HardState,
    /// The persist sequence number the next `Ready` will carry if it needs one.
    next_seq: u64,
    /// Set when the pending output needs a persist barrier (records, a new promise or
    /// messages that must wait for one).
    needs_seq: bool,
    /// The highest sequence the driver reported durable.
    persisted_seq: u64,
    /// Messages to this node itself that must wait for persistence: the acceptor's
    /// Promise/Accepted to its own proposer. Released by `persisted`.
    self_after_persist: VecDeque<(u64, Message)>,
    /// Messages to this node itself, handled before the current input returns.
    pub(crate) self_inbox: VecDeque<Message>,
    pub(crate) reads_ready: Vec<ReadId>,
    pub(crate) reads_failed: Vec<(ReadId, ReadError)>,
    pub(crate) send_snapshot: Vec<NodeId>,
    pub(crate) snapshot_chunks: Vec<SnapshotChunk>,
    pub(crate) app_messages: Vec<AppMessage>,
}

impl Outbox {
    pub(crate) fn new(id: NodeId, durable: HardState) -> Outbox {
        Outbox {
            id,
            emitted: durable,
            next_seq: 1,
            ..Outbox::default()
        }
    }

    pub(crate) fn send(&mut self, message: Message) {
        debug_assert_eq!(message.from, self.id);
        if message.to == self.id {
            self.self_inbox.push_back(message);
        } else {
            self.messages.push(message);
        }
    }

    /// Sends `message` only once everything persisted so far (including this input's
    /// writes) is durable: an acceptor's replies must never run ahead of its disk.
    pub(crate) fn send_after_persist(&mut self, message: Message) {
        debug_assert_eq!(message.from, self.id);
        self.needs_seq = true;
        if message.to == self.id {
            self.self_after_persist.push_back((self.next_seq, message));
        } else {
            self.after_persist.push(message);
        }
    }

    pub(crate) fn persist(&mut self, record: LogRecord) {
        self.needs_seq = true;
        self.records.push(record);
    }

    /// The driver reports everything up to `seq` durable: release this node's own replies.
    pub(crate) fn persisted(&mut self, seq: u64) {
        assert!(
            seq < self.next_seq,
            "persisted({seq}) for a Ready never handed out"
        );
        self.persisted_seq = self.persisted_seq.max(seq);
        while let Some((s, _)) = self.self_after_persist.front() {
            if *s > self.persisted_seq {
                break;
            }
            let (_, m) = self.self_after_persist.pop_front().expect("front exists");
            self.self_inbox.push_back(m);
        }
    }

    pub(crate) fn has_output(&self, current: HardState) -> bool {
        self.needs_seq
            || current.promised != self.emitted.promised
            || !self.messages.is_empty()
            || !self.reads_ready.is_empty()
            || !self.reads_failed.is_empty()
            || !self.send_snapshot.is_empty()
            || !self.snapshot_chunks.is_empty()
            || !self.app_messages.is_empty()
    }

    /// Moves the accumulated output into `ready`. The hard state goes out whenever the
    /// promise changed or records are written; a commit point alone rides along lazily.
    pub(crate) fn drain_into(&mut self, ready: &mut Ready, current: HardState) {
        assert!(
            current.promised >= self.emitted.promised,
            "promise went backwards: {} after {}",
            current.promised,
            self.emitted.promised
        );
        let promise_changed = current.promised != self.emitted.promised;
        if promise_changed || !self.records.is_empty() {
            ready.hard_state = Some(current);
            self.emitted = current;
            self.needs_seq = true;
        }
        if self.needs_seq {
            ready.persist_seq = Some(self.next_seq);
            self.next_seq += 1;
            self.needs_seq = false;
        }
        ready.records = std::mem::take(&mut self.records);
        ready.messages = std::mem::take(&mut self.messages);
        ready.messages_after_persist = std::mem::take(&mut self.after_persist);
        ready.send_snapshot = std::mem::take(&mut self.send_snapshot);
        ready.snapshot_chunks = std::mem::take(&mut self.snapshot_chunks);
        ready.app_messages = std::mem::take(&mut self.app_messages);
        ready.reads_ready = std::mem::take(&mut self.reads_ready);
        ready.reads_failed = std::mem::take(&mut self.reads_failed);
    }
}
