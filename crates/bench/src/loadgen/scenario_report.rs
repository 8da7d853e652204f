//! The watch and lease workloads side by side: one row per figure, etcd's and Synod's value,
//! the ratio Synod/etcd, and which system the figure favours.

use super::cluster::System;
use super::report::{ratio, thousands};
use super::scenario::{Better, Scenario, ScenarioResult};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One scenario on both systems.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioPoint {
    pub scenario: Scenario,
    pub etcd: Option<ScenarioResult>,
    pub synod: Option<ScenarioResult>,
}

/// One figure of a scenario on both systems.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub scenario: Scenario,
    pub figure: String,
    pub etcd: Option<f64>,
    pub synod: Option<f64>,
    /// Synod/etcd.
    pub ratio: Option<f64>,
    /// "synod", "etcd" or "even", by the figure's better direction.
    pub ahead: Option<&'static str>,
}

impl ScenarioPoint {
    pub fn rows(&self) -> Vec<Row> {
        let results = [&self.etcd, &self.synod];
        let mut names: Vec<(&str, Better)> = Vec::new();
        for r in results.into_iter().flatten() {
            for m in &r.metrics {
                if !names.iter().any(|(n, _)| *n == m.name) {
                    names.push((&m.name, m.better));
                }
            }
        }
        let value = |r: &Option<ScenarioResult>, name: &str| {
            r.as_ref()
                .and_then(|r| r.metric(name))
                .and_then(|m| m.value)
        };
        names
            .into_iter()
            .map(|(name, better)| {
                let (etcd, synod) = (value(&self.etcd, name), value(&self.synod, name));
                Row {
                    scenario: self.scenario,
                    figure: name.to_string(),
                    etcd,
                    synod,
                    ratio: etcd.zip(synod).and_then(|(e, s)| ratio(s, e)),
                    ahead: etcd.zip(synod).map(|(e, s)| ahead(e, s, better)),
                }
            })
            .collect()
    }

    /// Each system's problems, named.
    pub fn problems(&self) -> Vec<String> {
        [(System::Etcd, &self.etcd), (System::Synod, &self.synod)]
            .into_iter()
            .filter_map(|(system, r)| Some((system, r.as_ref()?)))
            .flat_map(|(system, r)| {
                r.problems
                    .iter()
                    .map(move |p| format!("{system} {}: {p}", self.scenario))
            })
            .collect()
    }
}

/// Figures closer than this (relative to the larger) are called even: a rate both systems
/// kept up with differs only by when the window's edges fell.
const EVEN_WITHIN: f64 = 0.01;

fn ahead(etcd: f64, synod: f64, better: Better) -> &'static str {
    let scale = etcd.abs().max(synod.abs());
    if (etcd - synod).abs() <= scale * EVEN_WITHIN {
        return "even";
    }
    match (better, synod > etcd) {
        (Better::Higher, true) | (Better::Lower, false) => "synod",
        _ => "etcd",
    }
}

/// A figure as printed: thousands separators from 1,000, fewer decimals as it grows.
pub fn figure(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v.abs() >= 1000.0 => thousands(v),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 || v == 0.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

pub fn table(points: &[ScenarioPoint]) -> String {
    let mut out = format!(
        "{:<15} {:<48} {:>11} {:>11} {:>7} {:>6}\n",
        "workload", "figure", "etcd", "synod", "ratio", "ahead"
    );
    for row in points.iter().flat_map(ScenarioPoint::rows) {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<15} {:<48} {:>11} {:>11} {:>7} {:>6}",
            row.scenario.name(),
            row.figure,
            figure(row.etcd),
            figure(row.synod),
            times(row.ratio),
            row.ahead.unwrap_or("-"),
        );
    }
    out.push_str("(ratio = Synod/etcd; ahead: the system the figure favours)\n");
    for problem in points.iter().flat_map(ScenarioPoint::problems) {
        let _ = writeln!(out, "problem: {problem}");
    }
    out
}

pub fn markdown(points: &[ScenarioPoint]) -> String {
    let mut out = String::from(
        "| workload | figure | etcd | Synod | Synod/etcd | ahead |\n\
         |---|---|---:|---:|---:|---|\n",
    );
    for row in points.iter().flat_map(ScenarioPoint::rows) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.scenario.name(),
            row.figure,
            figure(row.etcd),
            figure(row.synod),
            times(row.ratio),
            row.ahead.unwrap_or("-"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::scenario::tests::result;

    #[test]
    fn rows_pair_figures_and_say_who_is_ahead() {
        let mut etcd = result(Scenario::WatchFanout, Some(4.0));
        let mut synod = result(Scenario::WatchFanout, Some(2.0));
        synod.metrics[1].value = Some(300.0);
        etcd.problems.push("3 watchers canceled".into());
        let point = ScenarioPoint {
            scenario: Scenario::WatchFanout,
            etcd: Some(etcd),
            synod: Some(synod),
        };
        let rows = point.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ratio, Some(0.5));
        assert_eq!(rows[0].ahead, Some("synod"), "lower is better");
        assert_eq!(rows[1].ratio, Some(3.0));
        assert_eq!(rows[1].ahead, Some("synod"), "higher is better");
        let text = table(std::slice::from_ref(&point));
        assert!(text.contains("0.50x"), "{text}");
        assert!(
            text.contains("problem: etcd watch-fanout: 3 watchers canceled"),
            "{text}"
        );
        let md = markdown(&[point]);
        assert!(
            md.contains("| watch-fanout | p50 ms | 4.00 | 2.00 | 0.50x | synod |"),
            "{md}"
        );
    }

    #[test]
    fn one_sided_and_even_points() {
        let zero = || {
            let mut r = result(Scenario::LeaseKeepalive, Some(0.0));
            r.metrics.truncate(1);
            r
        };
        let even = ScenarioPoint {
            scenario: Scenario::LeaseKeepalive,
            etcd: Some(zero()),
            synod: Some(zero()),
        };
        assert_eq!(even.rows()[0].ahead, Some("even"));
        assert_eq!(even.rows()[0].ratio, None, "0/0 has no ratio");
        assert_eq!(ahead(100_002.0, 99_997.0, Better::Higher), "even");
        assert_eq!(ahead(100.0, 98.0, Better::Higher), "etcd");
        let half = ScenarioPoint {
            scenario: Scenario::LeaseKeepalive,
            etcd: None,
            synod: Some(zero()),
        };
        assert_eq!(half.rows()[0].ahead, None);
        assert_eq!(half.rows()[0].synod, Some(0.0));
    }

    #[test]
    fn figures_shrink_their_decimals_as_they_grow() {
        assert_eq!(figure(None), "-");
        assert_eq!(figure(Some(0.0)), "0.00");
        assert_eq!(figure(Some(0.1234)), "0.123");
        assert_eq!(figure(Some(12.345)), "12.35");
        assert_eq!(figure(Some(123.4)), "123");
        assert_eq!(figure(Some(123_456.0)), "123,456");
    }
}
