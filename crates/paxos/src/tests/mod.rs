//! Whole-engine tests on a tiny in-memory cluster (instant persistence, instant delivery
//! unless a test cuts links). The simulator (crate synod-sim) tests the same engine under
//! faults; these pin down the basic paths readably.

mod app;
mod cluster;
mod frame_limit;
mod membership;
mod recovery;
mod scenarios;
