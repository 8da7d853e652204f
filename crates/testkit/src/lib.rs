//! # synod-testkit: what the tests, the chaos harness and the benchmarks share
//!
//! - [`rng`]: the seeded generator (the simulator's: a seed replays identically everywhere);
//! - [`ports`]: free loopback ports for members to listen on;
//! - [`binary`]: finding a built binary of this workspace (`synod`) to run;
//! - [`tool`]: finding a program the machine provides (`etcdctl`, `etcd`);
//! - [`member`], [`cluster`]: real member processes on loopback (each with its own ports,
//!   data directory and log), alone or as a cluster started with etcd's flags, so the same
//!   code runs Synod and etcd;
//! - [`http`]: a plain HTTP GET and the reading of Prometheus text from `/metrics`.
//!
//! Only std, `tempfile` and `nix` (signals): no async runtime, so every user can call it from
//! its own.

pub mod binary;
pub mod cluster;
pub mod error;
pub mod http;
pub mod member;
pub mod ports;
pub mod rng;
pub mod tool;

pub use binary::Bin;
pub use cluster::{Cluster, ClusterSpec};
pub use error::HarnessError;
pub use member::Member;
pub use ports::free_ports;
pub use tool::Tool;
