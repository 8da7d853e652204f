//! Time for the replica. It derives the engine ticks that are due from the time the core
//! reads here every time it wakes (`synod_replica::Ticks`), so ticks are never lost or late
//! when the core is busy. The ticker thread only wakes the core up once per tick when nothing
//! else does.
//!
//! This is the one place Synod reads time, so a test can skew one member's clock rate here
//! and see what leases do.

use super::Input;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// The member's clock as the replica reads it: time since the start, at a skewed rate in
/// tests.
#[derive(Debug)]
pub(crate) struct LocalClock {
    start: Instant,
    /// How fast this clock runs against real time, in parts per million (0: exact).
    skew_ppm: i64,
}

impl LocalClock {
    pub fn new(skew_ppm: i64) -> LocalClock {
        assert!(skew_ppm > -1_000_000, "a clock must move forward");
        LocalClock {
            start: Instant::now(),
            skew_ppm,
        }
    }

    pub fn now(&self) -> Duration {
        self.at(Instant::now())
    }

    fn at(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let scaled = elapsed * (1_000_000 + self.skew_ppm) as u128 / 1_000_000;
        Duration::from_nanos(scaled.min(u128::from(u64::MAX)) as u64)
    }
}

/// Wakes the core once per tick. A wake-up lost to a full queue costs nothing: the queue is
/// full, so the core is awake anyway.
pub(crate) fn spawn(tick: Duration, inputs: Sender<Input>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("synod-ticker".into())
        .spawn(move || {
            let mut next = Instant::now() + tick;
            loop {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                next += tick;
                match inputs.try_send(Input::Tick) {
                    Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        })
        .expect("the ticker thread starts (only fails when the OS is out of threads)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_runs_at_its_rate() {
        let exact = LocalClock::new(0);
        let t0 = exact.start;
        assert_eq!(
            exact.at(t0 + Duration::from_millis(35)),
            Duration::from_millis(35)
        );
        // A clock 10% fast counts 110 ms where real time has 100.
        let fast = LocalClock::new(100_000);
        let t0 = fast.start;
        assert_eq!(
            fast.at(t0 + Duration::from_millis(100)),
            Duration::from_millis(110)
        );
        // Time never runs backwards, even if asked about the past.
        assert_eq!(fast.at(t0 - Duration::from_millis(1)), Duration::ZERO);
    }
}
