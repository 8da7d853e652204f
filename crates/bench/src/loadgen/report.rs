//! Results, their readable tables and their JSON.

use super::workload::{Workload, WorkloadParams};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: h.len(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One workload at one client count against one set of endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub workload: Workload,
    pub clients: usize,
    pub connections: usize,
    pub endpoints: Vec<String>,
    pub params: WorkloadParams,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Operations completed inside the measured window.
    pub ops: u64,
    /// Failed operations inside the window (not in the latencies).
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Txn only: how many compare-and-sets found the revision they expected and wrote.
    pub cas_succeeded: Option<u64>,
    /// Operations of the background clients completed inside the window (the heavy Txns of
    /// `heavy-read-interference`; not in `ops` or the latencies).
    #[serde(default)]
    pub background_ops: Option<u64>,
    /// ops / duration_s.
    pub throughput: f64,
    pub latency: LatencySummary,
    /// CPU seconds the servers' processes used during the window (when known).
    pub server_cpu_s: Option<f64>,
    pub server_cpu_s_per_1k_ops: Option<f64>,
    /// CPU seconds this load generator used during the window.
    pub client_cpu_s: Option<f64>,
    pub client_cpu_s_per_1k_ops: Option<f64>,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// 1234567.8 → "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

pub fn run_table(results: &[RunResult]) -> String {
    let mut out = format!(
        "{:<17} {:>7} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12}\n",
        "workload",
        "clients",
        "conns",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "srv CPU-s/1k"
    );
    for r in results {
        let l = &r.latency;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<17} {:>7} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12}",
            r.workload.name(),
            r.clients,
            r.connections,
            thousands(r.throughput),
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            r.errors,
            opt(r.server_cpu_s_per_1k_ops, 3),
        );
    }
    for r in results {
        if let Some(n) = r.background_ops {
            let _ = writeln!(
                out,
                "{} with {} clients: {n} background operations completed meanwhile",
                r.workload, r.clients
            );
        }
        if let Some(ok) = r.cas_succeeded {
            let _ = writeln!(
                out,
                "{} with {} clients: {} of {} compare-and-sets succeeded",
                r.workload, r.clients, ok, r.ops
            );
        }
        for e in &r.error_samples {
            let _ = writeln!(out, "error ({} x{}): {e}", r.workload, r.clients);
        }
    }
    out
}

/// Synod's figure over etcd's, when both exist and etcd's is not zero.
pub fn ratio(synod: f64, etcd: f64) -> Option<f64> {
    (etcd > 0.0 && synod.is_finite()).then(|| synod / etcd)
}

/// One workload at one client count on both systems.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparePoint {
    pub workload: Workload,
    pub clients: usize,
    pub etcd: Option<RunResult>,
    pub synod: Option<RunResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    /// Synod/etcd: above 1 is Synod faster.
    pub throughput: Option<f64>,
    /// Synod/etcd: below 1 is Synod faster.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Synod/etcd: below 1 is Synod cheaper.
    pub cpu_per_1k_ops: Option<f64>,
}

impl ComparePoint {
    pub fn ratios(&self) -> Ratios {
        let (Some(e), Some(s)) = (&self.etcd, &self.synod) else {
            return Ratios {
                throughput: None,
                p50: None,
                p99: None,
                cpu_per_1k_ops: None,
            };
        };
        Ratios {
            throughput: ratio(s.throughput, e.throughput),
            p50: ratio(s.latency.p50_us as f64, e.latency.p50_us as f64),
            p99: ratio(s.latency.p99_us as f64, e.latency.p99_us as f64),
            cpu_per_1k_ops: s
                .server_cpu_s_per_1k_ops
                .zip(e.server_cpu_s_per_1k_ops)
                .and_then(|(s, e)| ratio(s, e)),
        }
    }
}

pub fn compare_table(points: &[ComparePoint]) -> String {
    let mut out = format!(
        "{:<17} {:>7} | {:>9} {:>9} {:>6} | {:>7} {:>7} {:>6} | {:>7} {:>7} {:>6} | {:>6} {:>6} {:>6}\n",
        "workload",
        "clients",
        "etcd/s",
        "synod/s",
        "ratio",
        "p50 e",
        "p50 s",
        "ratio",
        "p99 e",
        "p99 s",
        "ratio",
        "cpu e",
        "cpu s",
        "ratio"
    );
    let thr = |r: &Option<RunResult>| r.as_ref().map_or("-".into(), |r| thousands(r.throughput));
    let lat = |r: &Option<RunResult>, f: fn(&LatencySummary) -> u64| {
        r.as_ref().map_or("-".into(), |r| ms(f(&r.latency)))
    };
    let cpu = |r: &Option<RunResult>| opt(r.as_ref().and_then(|r| r.server_cpu_s_per_1k_ops), 3);
    let x = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
    for p in points {
        let r = p.ratios();
        let _ = writeln!(
            out,
            "{:<17} {:>7} | {:>9} {:>9} {:>6} | {:>7} {:>7} {:>6} | {:>7} {:>7} {:>6} | {:>6} {:>6} {:>6}",
            p.workload.name(),
            p.clients,
            thr(&p.etcd),
            thr(&p.synod),
            x(r.throughput),
            lat(&p.etcd, |l| l.p50_us),
            lat(&p.synod, |l| l.p50_us),
            x(r.p50),
            lat(&p.etcd, |l| l.p99_us),
            lat(&p.synod, |l| l.p99_us),
            x(r.p99),
            cpu(&p.etcd),
            cpu(&p.synod),
            x(r.cpu_per_1k_ops),
        );
    }
    out.push_str(
        "(ops/s: throughput; p50/p99 in ms; cpu: CPU seconds of the 3 server processes per \
         1,000 operations; ratio = Synod/etcd)\n",
    );
    out
}

/// The same comparison as a Markdown table, for docs/BENCHMARKS.md.
pub fn compare_markdown(points: &[ComparePoint]) -> String {
    let mut out = String::from(
        "| workload | clients | etcd ops/s | Synod ops/s | ratio | p50 ms etcd / Synod | ratio | \
         p99 ms etcd / Synod | ratio | CPU-s/1k ops etcd / Synod | ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let x = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
    for p in points {
        let (Some(e), Some(s)) = (&p.etcd, &p.synod) else {
            continue;
        };
        let r = p.ratios();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} / {} | {} | {} / {} | {} |",
            p.workload,
            p.clients,
            thousands(e.throughput),
            thousands(s.throughput),
            x(r.throughput),
            ms(e.latency.p50_us),
            ms(s.latency.p50_us),
            x(r.p50),
            ms(e.latency.p99_us),
            ms(s.latency.p99_us),
            x(r.p99),
            opt(e.server_cpu_s_per_1k_ops, 3),
            opt(s.server_cpu_s_per_1k_ops, 3),
            x(r.cpu_per_1k_ops),
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn result(workload: Workload, clients: usize, ops: u64, p50: u64) -> RunResult {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for _ in 0..ops {
            h.record(p50).unwrap();
        }
        h.record(p50 * 10).unwrap();
        RunResult {
            workload,
            clients,
            connections: clients.min(16),
            endpoints: vec!["127.0.0.1:2379".into()],
            params: WorkloadParams {
                key_size: 16,
                value_size: 256,
                keyspace: 10_000,
                read_percent: 50,
            },
            warmup_s: 1.0,
            duration_s: 2.0,
            ops,
            errors: 0,
            error_samples: vec![],
            cas_succeeded: None,
            background_ops: None,
            throughput: ops as f64 / 2.0,
            latency: LatencySummary::of(&h),
            server_cpu_s: Some(ops as f64 / 1000.0),
            server_cpu_s_per_1k_ops: Some(1.0),
            client_cpu_s: None,
            client_cpu_s_per_1k_ops: None,
            load_average_before: Some(1.0),
            load_average_after: Some(1.5),
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let l = LatencySummary::of(&h);
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p90_us, 900);
        assert_eq!(l.p99_us, 990);
        assert_eq!(l.p999_us, 999);
        assert_eq!(l.max_us, 1000);
        assert!((l.mean_us - 500.5).abs() < 1.0);
        assert_eq!(ms(1500), "1.500");
    }

    #[test]
    fn tables_and_json_show_every_run() {
        let r = result(Workload::Put, 64, 2000, 800);
        let table = run_table(std::slice::from_ref(&r));
        assert!(table.contains("put"), "{table}");
        assert!(table.contains("1,000"), "{table}");
        assert!(table.contains("0.800"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["workload"], "put");
        assert_eq!(json["ops"], 2000);
        assert_eq!(json["latency"]["p50_us"], 800);
    }

    #[test]
    fn ratios_are_synod_over_etcd() {
        let point = ComparePoint {
            workload: Workload::Get,
            clients: 16,
            etcd: Some(result(Workload::Get, 16, 1000, 1000)),
            synod: Some(result(Workload::Get, 16, 3000, 500)),
        };
        let r = point.ratios();
        assert_eq!(r.throughput, Some(3.0));
        assert_eq!(r.p50, Some(0.5));
        assert_eq!(r.cpu_per_1k_ops, Some(1.0));
        let table = compare_table(std::slice::from_ref(&point));
        assert!(table.contains("3.00x"), "{table}");
        let md = compare_markdown(&[point]);
        assert!(md.contains("| get | 16 | 500 | 1,500 | 3.00x |"), "{md}");

        let half = ComparePoint {
            workload: Workload::Put,
            clients: 1,
            etcd: None,
            synod: Some(result(Workload::Put, 1, 10, 10)),
        };
        assert_eq!(half.ratios().throughput, None);
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
