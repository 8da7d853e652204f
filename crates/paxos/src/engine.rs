//! The engine's public face (stub while the protocol is written).
#![allow(dead_code, unused_variables)]

use crate::config::{Config, ConfigError};
use crate::message::Message;
use crate::ready::{DurableState, ProposeError, ReadId, Ready, Status};
use crate::types::{Command, NodeId, Slot};

#[derive(Debug)]
pub struct Engine {
    config: Config,
}

impl Engine {
    pub fn new(config: Config, durable: DurableState) -> Result<Engine, ConfigError> {
        todo!()
    }
    pub fn id(&self) -> NodeId {
        todo!()
    }
    pub fn propose(&mut self, commands: Vec<Command>) -> Result<(), ProposeError> {
        todo!()
    }
    pub fn read_barrier(&mut self, id: ReadId) {
        todo!()
    }
    pub fn step(&mut self, message: Message) {
        todo!()
    }
    pub fn tick(&mut self) {
        todo!()
    }
    pub fn persisted(&mut self, persist_seq: u64) {
        todo!()
    }
    pub fn applied(&mut self, slot: Slot) {
        todo!()
    }
    pub fn has_ready(&self) -> bool {
        todo!()
    }
    pub fn ready(&mut self) -> Ready {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
}
