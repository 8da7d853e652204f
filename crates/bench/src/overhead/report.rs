//! Output: a readable table, JSON lines (hand-written: the fields are few and flat) and the
//! ratios against the reference figures ([`super::REFERENCES`]).

use super::{reference, Measurement, TICK};
use std::fmt::Write;
use synod_paxos::Config;

/// The engine knobs that shape this benchmark, on one line.
pub fn describe_config(config: &Config) -> String {
    format!(
        "tick={}ms heartbeat_interval_ticks={} election_timeout_ticks={} inflight_slots_max={} \
         batch_commands_max={} batch_bytes_max={} pending_commands_max={}",
        TICK.as_millis(),
        config.heartbeat_interval_ticks,
        config.election_timeout_ticks,
        config.inflight_slots_max,
        config.batch_commands_max,
        config.batch_bytes_max,
        config.pending_commands_max,
    )
}

pub fn table(measurements: &[Measurement]) -> String {
    let mut out = format!(
        "{:<8} {:>9} {:>6} {:>12} {:>12} {:>8} {:>8} {:>9} {:>6} {:>12} {:>8}\n",
        "scenario",
        "proposers",
        "batch",
        "commands/s",
        "proposals/s",
        "p50 us",
        "p99 us",
        "cmds/slot",
        "CPU %",
        "cmds/CPU-s",
        "RSS MiB"
    );
    for m in measurements {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>6} {:>12} {:>12} {:>8.1} {:>8.1} {:>9.1} {:>6} {:>12} {:>8}",
            m.scenario.to_string(),
            m.scenario.proposers,
            m.scenario.batch,
            thousands(m.commands_per_sec()),
            thousands(m.proposals_per_sec()),
            m.latency_us(0.50),
            m.latency_us(0.99),
            m.commands_per_slot(),
            or_dash(m.cpu_share().map(|share| format!("{:.0}", share * 100.0))),
            or_dash(m.commands_per_cpu_sec().map(thousands)),
            or_dash(m.resident_mib.map(|mib| format!("{mib:.0}"))),
        );
    }
    out
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_string())
}

/// One line per scenario that has a reference figure; empty if none was run.
pub fn ratios(measurements: &[Measurement]) -> String {
    let mut out = String::new();
    for m in measurements {
        let Some(reference) = reference(m.scenario) else {
            continue;
        };
        let per_cpu = m
            .commands_per_cpu_sec()
            .map(|c| format!(" (per on-CPU second: {:.2}x)", c / reference))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<7} {:>12} commands/s / {:>9} = {:.2}x{per_cpu}",
            m.scenario.to_string(),
            thousands(m.commands_per_sec()),
            thousands(reference),
            m.commands_per_sec() / reference,
        );
    }
    if out.is_empty() {
        return out;
    }
    format!("vs mature Rust library reference (same method, 2-core machine):\n{out}")
}

pub fn json_line(m: &Measurement) -> String {
    let reference = reference(m.scenario);
    format!(
        "{{\"bench\":\"engine_overhead\",\"scenario\":\"{}\",\"proposers\":{},\"batch\":{},\
         \"duration_secs\":{:.3},\"commands\":{},\"proposals\":{},\"slots\":{},\
         \"commands_per_sec\":{:.1},\"proposals_per_sec\":{:.1},\"p50_us\":{:.2},\
         \"p99_us\":{:.2},\"commands_per_slot\":{:.2},\"on_cpu_secs\":{},\
         \"commands_per_cpu_sec\":{},\"resident_mib\":{},\
         \"reference_commands_per_sec\":{},\"ratio_vs_reference\":{}}}",
        m.scenario,
        m.scenario.proposers,
        m.scenario.batch,
        m.elapsed.as_secs_f64(),
        m.window.commands,
        m.window.proposals,
        m.window.slots,
        m.commands_per_sec(),
        m.proposals_per_sec(),
        m.latency_us(0.50),
        m.latency_us(0.99),
        m.commands_per_slot(),
        json_number(m.on_cpu.map(|d| d.as_secs_f64()), 3),
        json_number(m.commands_per_cpu_sec(), 1),
        json_number(m.resident_mib, 1),
        json_number(reference, 0),
        json_number(reference.map(|r| m.commands_per_sec() / r), 3),
    )
}

fn json_number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "null".to_string(),
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(value: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
