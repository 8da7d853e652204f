//! # synod-chaos: real `synod` processes, real faults, every client history checked
//!
//! A run starts 3 or 5 `synod` processes whose peer links all go through a fault proxy
//! ([`proxy`], one per directed link, so partitions need no root and no kernel features),
//! runs concurrent etcd clients against random members ([`workload`]: reads, puts and
//! compare-and-set Txns on a few keys; [`bank`]: transfers as Txns), injects a schedule of
//! faults ([`schedule`], [`nemesis`]: kill -9 and restart, SIGSTOP/SIGCONT, symmetric and
//! one-way partitions, the leader isolated, partial connectivity, lossy and slow links,
//! connection resets, a member's write-ahead log losing its synced tail ([`tail`])), heals,
//! and checks ([`checks`]):
//! (a) the history of every write and linearizable read is linearizable, values and
//! revisions ([`synod_check`]), (b) no acknowledged write is lost, (c) every member serves
//! again within a bound after healing, (d) every bank read shows the same total.
//!
//! ```sh
//! cargo build --release -p synod-server -p synod-chaos
//! target/release/synod-chaos run --nodes 5 --duration 60s --seed 7
//! target/release/synod-chaos long --minutes 30
//! ```
//!
//! See docs/RELIABILITY.md.

pub mod bank;
pub mod checks;
pub mod clients;
pub mod cluster;
pub mod etcd;
pub mod evidence;
pub mod history;
pub mod membership;
pub mod nemesis;
pub mod proxy;
pub mod recovery;
pub mod run;
pub mod schedule;
pub mod tail;
pub mod workload;

pub use nemesis::Scenario;
pub use run::{run, RunConfig, RunReport};
pub use schedule::{FaultKind, ALL_FAULTS};
