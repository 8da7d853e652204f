//! The watch and lease workloads of `synod-bench compare`. Unlike the closed-loop workloads
//! (one throughput and latency per client count), each of these sets up its own watchers or
//! leases on a running cluster, measures a few figures of its own, and removes what it set
//! up. This module names them, sizes them from the command line, samples CPU and load around
//! their measured windows, and holds their results; [`super::watch`] and [`super::lease`] run
//! them, [`super::scenario_report`] prints them.

use super::cluster::{Cluster, System};
use super::sys;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};

/// In the order they run (see [`Scenario::ordered`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// RSS of the members with 10,000 idle watchers (100 streams) against none, per watcher.
    WatchMemory,
    /// Put→event latency, from the writer's receipt of the put's acknowledgement to the
    /// event's arrival, with 1 and with 1,000 watchers on one prefix, watching on another
    /// member than the one written to and on the same member.
    WatchLatency,
    /// Events/s delivered to 10,000 watchers over 100 streams on all members while a writer
    /// puts at a fixed rate; watchers that fell behind or were canceled.
    WatchFanout,
    /// 10,000 leases kept alive at once over 100 keep-alive streams on all members, each
    /// renewed every TTL/3: server CPU per keep-alive, latency, and no lease lost.
    LeaseKeepalive,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::WatchMemory => "watch-memory",
            Scenario::WatchLatency => "watch-latency",
            Scenario::WatchFanout => "watch-fanout",
            Scenario::LeaseKeepalive => "lease-keepalive",
        }
    }

    /// Distinct, in run order: watch-memory first, so that it measures members whose
    /// allocators hold no memory freed by earlier workloads (that would hide the growth).
    pub fn ordered(mut scenarios: Vec<Scenario>) -> Vec<Scenario> {
        scenarios.sort();
        scenarios.dedup();
        scenarios
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The command line's knobs for the watch and lease workloads.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// Size of the watch and lease workloads against their defaults (watch-memory and
    /// watch-fanout 10,000 watchers over 100 streams, watch-latency 1 and 1,000 watchers,
    /// lease-keepalive 10,000 leases over 100 streams): counts are multiplied by it (at
    /// least 1 each); e.g. 0.1 for a quick look.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Puts per second of watch-latency's writer.
    #[arg(long, default_value_t = 20.0)]
    pub latency_put_rate: f64,
    /// Puts per second of watch-fanout's writer (each put is an event for every watcher).
    #[arg(long, default_value_t = 10.0)]
    pub fanout_put_rate: f64,
    /// TTL of lease-keepalive's leases in seconds; each is renewed every TTL/3.
    #[arg(long, default_value_t = 10)]
    pub lease_ttl: i64,
}

/// Watchers per stream, in every watch workload: 10,000 watchers over 100 streams, as the
/// workloads are specified, and 1,000 latency watchers over 10.
pub const WATCHERS_PER_STREAM: usize = 100;
/// Leases per keep-alive stream (10,000 over 100), as a client library that keeps many
/// leases alive on one stream does.
pub const LEASES_PER_STREAM: usize = 100;

/// How many watchers, streams and leases each workload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// watch-latency runs once per count.
    pub latency_watchers: [usize; 2],
    pub fanout_watchers: usize,
    pub memory_watchers: usize,
    pub leases: usize,
}

impl Sizes {
    /// Streams for `watchers` watchers, at most [`WATCHERS_PER_STREAM`] on each.
    pub fn streams_for(watchers: usize) -> usize {
        watchers.div_ceil(WATCHERS_PER_STREAM).max(1)
    }

    /// Keep-alive streams for `leases` leases.
    pub fn lease_streams_for(leases: usize) -> usize {
        leases.div_ceil(LEASES_PER_STREAM).max(1)
    }
}

/// Everything a scenario run needs to know besides its cluster.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Settings {
    pub sizes: Sizes,
    pub latency_put_rate: f64,
    pub fanout_put_rate: f64,
    pub lease_ttl: i64,
    /// Bytes per value written (the closed-loop workloads' --value-size).
    pub value_size: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

impl ScenarioArgs {
    pub fn settings(
        &self,
        value_size: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Settings, String> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err("--scale must be a positive number".into());
        }
        for (flag, rate) in [
            ("--latency-put-rate", self.latency_put_rate),
            ("--fanout-put-rate", self.fanout_put_rate),
        ] {
            if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
                return Err(format!("{flag} must be above 0 and at most 10000"));
            }
        }
        // etcd raises a TTL below its minimum (2 s with default timings) to it; 3 s or more
        // keeps both systems at the TTL asked for.
        if !(3..=3600).contains(&self.lease_ttl) {
            return Err("--lease-ttl must be between 3 and 3600 seconds".into());
        }
        let scaled = |n: usize| ((n as f64 * self.scale).round() as usize).max(1);
        Ok(Settings {
            sizes: Sizes {
                latency_watchers: [1, scaled(1_000)],
                fanout_watchers: scaled(10_000),
                memory_watchers: scaled(10_000),
                leases: scaled(10_000),
            },
            latency_put_rate: self.latency_put_rate,
            fanout_put_rate: self.fanout_put_rate,
            lease_ttl: self.lease_ttl,
            value_size,
            warmup,
            duration,
        })
    }
}

/// A running cluster as the scenarios see it.
#[derive(Debug, Clone)]
pub struct Target {
    pub system: System,
    /// Every member's endpoint, the leader's first (so `endpoints[1]` is a follower).
    pub endpoints: Vec<String>,
    pub pids: Vec<u32>,
}

impl Target {
    pub fn label(&self, scenario: Scenario) -> String {
        format!("[{} {scenario}] ", self.system)
    }

    /// RSS of every member, in member order; `None` if one is gone.
    pub fn rss_bytes(&self) -> Option<Vec<u64>> {
        self.pids.iter().map(|&pid| sys::rss_bytes(pid)).collect()
    }

    /// A value every member's process holds: printable bytes, as the closed-loop workloads
    /// write.
    pub fn value(size: usize) -> Vec<u8> {
        (0..size).map(|i| b'a' + (i % 26) as u8).collect()
    }
}

/// CPU and load at one moment, to measure a window between two of them.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: Instant,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    load: Option<f64>,
}

impl Mark {
    pub fn take(target: &Target) -> Mark {
        Mark {
            at: Instant::now(),
            server_cpu: Cluster::cpu_seconds(&target.pids),
            client_cpu: sys::own_cpu_seconds(),
            load: sys::load_average(),
        }
    }

    /// What was spent from `self` to `later`: utime + stime of the member processes (as the
    /// closed-loop workloads measure it) and of the load generator.
    pub fn until(&self, later: &Mark) -> Spent {
        let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        Spent {
            seconds: (later.at - self.at).as_secs_f64(),
            server_cpu_s: delta(self.server_cpu, later.server_cpu),
            client_cpu_s: delta(self.client_cpu, later.client_cpu),
            load_average_before: self.load,
            load_average_after: later.load,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    pub seconds: f64,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
}

impl Spent {
    /// Server CPU microseconds per unit of work (`None` without CPU figures or work).
    pub fn server_us_per(&self, units: u64) -> Option<f64> {
        self.server_cpu_s
            .filter(|_| units > 0)
            .map(|s| s * 1e6 / units as f64)
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One figure of a scenario run, named with its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: Option<f64>,
    pub better: Better,
}

impl Metric {
    pub fn lower(name: impl Into<String>, value: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            better: Better::Lower,
        }
    }

    pub fn higher(name: impl Into<String>, value: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            better: Better::Higher,
        }
    }
}

/// One scenario on one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// The figures compared; the first is the one rounds are ranked by.
    pub metrics: Vec<Metric>,
    /// What went wrong (watchers canceled or behind, leases lost, failed requests), said
    /// after the table.
    pub problems: Vec<String>,
    /// Everything else measured, for compare.json.
    pub details: serde_json::Value,
}

impl ScenarioResult {
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// The run whose first figure is the median of the runs (the lower middle one for an even
/// count; runs without that figure rank last), kept whole like the closed-loop points'.
pub fn median_result(runs: Option<&Vec<ScenarioResult>>) -> Option<ScenarioResult> {
    let mut runs: Vec<&ScenarioResult> = runs?.iter().collect();
    if runs.is_empty() {
        return None;
    }
    let key = |r: &ScenarioResult| r.metrics.first().and_then(|m| m.value);
    runs.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    Some(runs[(runs.len() - 1) / 2].clone())
}

/// Runs one scenario against a ready cluster.
pub async fn run(
    target: &Target,
    scenario: Scenario,
    settings: &Settings,
) -> Result<ScenarioResult, String> {
    match scenario {
        Scenario::WatchMemory => super::watch::memory::run(target, settings).await,
        Scenario::WatchLatency => super::watch::latency::run(target, settings).await,
        Scenario::WatchFanout => super::watch::fanout::run(target, settings).await,
        Scenario::LeaseKeepalive => super::lease::run(target, settings).await,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn result(scenario: Scenario, first: Option<f64>) -> ScenarioResult {
        ScenarioResult {
            scenario,
            metrics: vec![
                Metric::lower("p50 ms", first),
                Metric::higher("events/s", Some(100.0)),
            ],
            problems: vec![],
            details: serde_json::Value::Null,
        }
    }

    fn args(scale: f64) -> ScenarioArgs {
        ScenarioArgs {
            scale,
            latency_put_rate: 20.0,
            fanout_put_rate: 10.0,
            lease_ttl: 10,
        }
    }

    #[test]
    fn sizes_scale_and_never_drop_to_zero() {
        let d = Duration::from_secs(1);
        let full = args(1.0).settings(256, d, d).unwrap().sizes;
        assert_eq!(full.latency_watchers, [1, 1_000]);
        assert_eq!(full.fanout_watchers, 10_000);
        assert_eq!(Sizes::streams_for(full.fanout_watchers), 100);
        assert_eq!(Sizes::streams_for(full.latency_watchers[1]), 10);
        assert_eq!(Sizes::lease_streams_for(full.leases), 100);
        let tiny = args(0.0001).settings(256, d, d).unwrap().sizes;
        assert_eq!(tiny.latency_watchers, [1, 1]);
        assert_eq!(tiny.leases, 1);
        assert_eq!(Sizes::streams_for(tiny.memory_watchers), 1);
        assert_eq!(Sizes::streams_for(150), 2);
        assert!(args(0.0).settings(256, d, d).is_err());
        assert!(args(f64::NAN).settings(256, d, d).is_err());
        let mut bad_ttl = args(1.0);
        bad_ttl.lease_ttl = 1;
        assert!(bad_ttl.settings(256, d, d).is_err());
    }

    #[test]
    fn scenarios_run_memory_first_and_once() {
        let ordered = Scenario::ordered(vec![
            Scenario::LeaseKeepalive,
            Scenario::WatchMemory,
            Scenario::WatchLatency,
            Scenario::LeaseKeepalive,
        ]);
        assert_eq!(
            ordered,
            [
                Scenario::WatchMemory,
                Scenario::WatchLatency,
                Scenario::LeaseKeepalive
            ]
        );
        assert_eq!(Scenario::WatchFanout.to_string(), "watch-fanout");
        let json = serde_json::to_value(Scenario::LeaseKeepalive).unwrap();
        assert_eq!(json, "lease-keepalive");
    }

    #[test]
    fn the_median_run_is_ranked_by_the_first_figure() {
        assert!(median_result(None).is_none());
        let runs = vec![
            result(Scenario::WatchLatency, Some(3.0)),
            result(Scenario::WatchLatency, None),
            result(Scenario::WatchLatency, Some(1.0)),
            result(Scenario::WatchLatency, Some(2.0)),
        ];
        let median = median_result(Some(&runs)).unwrap();
        assert_eq!(median.metrics[0].value, Some(2.0));
        let three = median_result(Some(&runs[..3].to_vec())).unwrap();
        assert_eq!(three.metrics[0].value, Some(3.0));
    }

    #[test]
    fn cpu_per_unit_needs_cpu_and_units() {
        let spent = Spent {
            seconds: 10.0,
            server_cpu_s: Some(2.0),
            client_cpu_s: None,
            load_average_before: None,
            load_average_after: None,
        };
        assert_eq!(spent.server_us_per(1_000_000), Some(2.0));
        assert_eq!(spent.server_us_per(0), None);
        assert_eq!(
            Spent {
                server_cpu_s: None,
                ..spent
            }
            .server_us_per(5),
            None
        );
    }
}
