//! Synod benchmarks.
