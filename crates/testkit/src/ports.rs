//! Free loopback ports for members to listen on.
//!
//! Ports are chosen *below* the kernel's ephemeral range. A port from there (bind to port 0)
//! is free now but may be handed out again, to a proxy listener or to some outgoing
//! connection, before the member binds it (a long chaos run hit exactly that); nothing is
//! given a port below the range unless it asks for one by number. Each candidate is bound
//! (so one in use is skipped) and held until all are chosen, and a port is handed out once
//! per process, so clusters started side by side by the tests of one binary never get the
//! same one. Another process could still take one in between; the member then fails at bind,
//! loudly.

use crate::error::HarnessError;
use crate::rng::Rng;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out (below it live well-known services).
const PORT_LOW: u16 = 10_000;
/// Room needed below the ephemeral range.
const ROOM_MIN: u16 = 1000;
/// Candidates tried for one call before giving up (the range is some 20,000 ports wide).
const ATTEMPTS_MAX: usize = 100_000;

/// Every port this process handed out: a killed member's ports stay taken.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct free loopback ports, never handed out before by this process.
pub fn free_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let hi = ephemeral_low.saturating_sub(1);
    if hi <= PORT_LOW + ROOM_MIN {
        return Err(HarnessError::Ports(format!(
            "the ephemeral port range starts at {ephemeral_low}: no room below it for members"
        )));
    }
    let mut rng = Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32,
    );
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Held until all are chosen, so that no port is picked twice.
    let mut held: Vec<(u16, TcpListener)> = Vec::with_capacity(n);
    for _ in 0..ATTEMPTS_MAX {
        if held.len() == n {
            break;
        }
        let port = rng.range(u64::from(PORT_LOW), u64::from(hi)) as u16;
        if handed_out.contains(&port) || held.iter().any(|(p, _)| *p == port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, l));
        }
    }
    if held.len() < n {
        return Err(HarnessError::Ports(format!(
            "found {} of {n} in {ATTEMPTS_MAX} attempts between {PORT_LOW} and {hi}",
            held.len()
        )));
    }
    let ports: Vec<u16> = held.into_iter().map(|(p, _)| p).collect();
    handed_out.extend(ports.iter().copied());
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_never_handed_out_twice() {
        let a = free_ports(20).unwrap();
        let b = free_ports(20).unwrap();
        let all: BTreeSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 40);
        for p in all {
            assert!(p >= PORT_LOW);
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
        }
    }
}
