//! # synod-paxos: a sans-IO Multi-Paxos engine
//!
//! The engine is a deterministic state machine. It performs no I/O, reads no clock, spawns no
//! threads and takes its randomness from a seed. A driver feeds it inputs (`propose`,
//! `read_barrier`, `step`, `tick`, `persisted`, `applied`) and drains a [`Ready`] describing
//! what to persist, what to send (before or only after the persist), what was chosen and
//! which reads may be served. The server and the simulator drive the same code.
//!
//! See docs/PROTOCOL.md for the protocol and where each invariant is held.

mod acceptor;
mod app;
pub mod codec;
mod config;
mod election;
mod engine;
mod leader;
mod log;
mod memberships;
mod message;
mod outbox;
mod reads;
mod ready;
mod recovery;
mod rng;
mod types;

pub use app::{AppError, APP_DATA_BYTES_MAX};
pub use config::{Config, ConfigError, PlantedBug, ReadMode};
pub use engine::{Engine, TransferError};
pub use leader::LEARN_CHUNKS_PER_BATCH;
pub use memberships::MembershipChange;
pub use message::{Body, Message, PromisedSlot};
pub use ready::{
    AppMessage, Committed, DurableState, HardState, LogRecord, ProposeError, ReadError, ReadId,
    Ready, Role, SnapshotChunk, SnapshotInfo, Status,
};
pub use recovery::RecoveryPhase;
pub use types::{
    membership_effective_slot, Ballot, Command, Membership, NodeId, SharedValue, Slot, Value,
    MEMBERSHIP_DELAY_SLOTS,
};

#[cfg(test)]
mod tests;
