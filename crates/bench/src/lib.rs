//! Synod benchmarks.

pub mod loadgen;
pub mod overhead;
