//! Synod benchmarks.

pub mod overhead;
