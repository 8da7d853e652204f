//! Synod simulator.
pub mod linearizability;
