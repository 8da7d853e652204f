//! `synod-bench`: a load generator over the etcd v3 API, through the `etcd-client`
//! crate, so the very same client code drives Synod and etcd; and `synod-bench compare`, which
//! runs both as 3-member clusters on loopback and sets their figures side by side.
//!
//! - [`cli`]: the command line.
//! - [`workload`]: what one operation is (put, linearizable or serializable get, a mix,
//!   compare-and-set Txn) and the keys and values it uses.
//! - [`runner`]: closed-loop clients over a set of connections, warm-up then a fixed measured
//!   window, latencies in an HDR histogram.
//! - [`report`]: the readable table and JSON.
//! - [`cluster`]: starting, checking and killing 3-member etcd and Synod clusters.
//! - [`sys`]: what `/proc` tells: CPU seconds of a process, load average, filesystem type.
//! - [`compare`]: `synod-bench compare`.
//! - [`binaries`]: the etcd and synod binaries it runs.
//! - [`scenario`]: the watch and lease workloads of `compare` (sizes, results), run by
//!   [`watch`] (watch-memory, watch-latency, watch-fanout) and [`lease`] (lease-keepalive);
//!   [`scenario_report`] sets their figures side by side.
//! - [`plot`]: the PNG.
//! - [`restart`]: `synod-bench restart`, recovery time and data-directory size.

pub mod binaries;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod lease;
pub mod plot;
pub mod report;
pub mod restart;
pub mod runner;
pub mod scenario;
pub mod scenario_report;
pub mod sys;
pub mod watch;
pub mod workload;
