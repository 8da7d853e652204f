//! Time for the engine. The engine counts ticks; the core derives how many are due from the
//! monotonic clock every time it wakes, so ticks are never lost or late when the core is
//! busy. (Were ticks messages in the input queue, a backlog would slow the leader's clock,
//! and a slow leader clock lets a lease outlive its safety margin.) The ticker thread only
//! wakes the core up once per tick when nothing else does.
//!
//! This is the one place Synod reads time, so a test can skew one member's clock rate here
//! and see what leases do.

use super::Input;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

#[derive(Debug)]
pub(crate) struct TickClock {
    start: Instant,
    tick: Duration,
    /// How fast this clock runs against real time, in parts per million (0: exact).
    skew_ppm: i64,
    ticks_done: u64,
}

impl TickClock {
    pub fn new(tick: Duration, skew_ppm: i64) -> TickClock {
        assert!(!tick.is_zero(), "a tick lasts some time");
        assert!(skew_ppm > -1_000_000, "a clock must move forward");
        TickClock {
            start: Instant::now(),
            tick,
            skew_ppm,
            ticks_done: 0,
        }
    }

    /// Ticks that have come due by `now` and were not taken yet.
    pub fn take_due(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let scaled = elapsed * (1_000_000 + self.skew_ppm) as u128 / 1_000_000;
        let total = (scaled / self.tick.as_nanos()) as u64;
        let due = total.saturating_sub(self.ticks_done);
        self.ticks_done = self.ticks_done.max(total);
        due
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
    fn due_ticks_follow_the_clock_and_its_skew() {
        let mut exact = TickClock::new(Duration::from_millis(10), 0);
        let t0 = exact.start;
        assert_eq!(exact.take_due(t0 + Duration::from_millis(5)), 0);
        assert_eq!(exact.take_due(t0 + Duration::from_millis(35)), 3);
        assert_eq!(exact.take_due(t0 + Duration::from_millis(39)), 0);
        assert_eq!(exact.take_due(t0 + Duration::from_millis(40)), 1);
        // A clock 10% fast counts 11 ticks where real time has 10.
        let mut fast = TickClock::new(Duration::from_millis(10), 100_000);
        let t0 = fast.start;
        assert_eq!(fast.take_due(t0 + Duration::from_millis(100)), 11);
        // Time never runs backwards, even if asked about the past.
        assert_eq!(fast.take_due(t0), 0);
    }
}
