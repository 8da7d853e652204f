//! Engine time. The engine counts ticks; the replica derives how many are due from the time
//! its shell reports at every turn, so ticks are never lost or late when the shell is busy.
//! (Were ticks inputs queued behind others, a backlog would slow the leader's clock, and a
//! slow leader clock lets a lease outlive its safety margin.)

use crate::Time;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Ticks {
    tick: Duration,
    done: u64,
}

impl Ticks {
    pub fn new(tick: Duration) -> Ticks {
        assert!(!tick.is_zero(), "a tick lasts some time");
        Ticks { tick, done: 0 }
    }

    /// Ticks that have come due by `now` and were not taken yet. Time never runs backwards:
    /// asked about the past, it owes nothing.
    pub fn take_due(&mut self, now: Time) -> u64 {
        let total = (now.as_nanos() / self.tick.as_nanos()) as u64;
        let due = total.saturating_sub(self.done);
        self.done = self.done.max(total);
        due
    }

    /// When the next tick comes due (for a shell that sleeps until then).
    pub fn next_due(&self) -> Time {
        self.tick * (self.done as u32 + 1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_ticks_follow_the_time_reported() {
        let ms = Duration::from_millis;
        let mut t = Ticks::new(ms(10));
        assert_eq!(t.take_due(ms(5)), 0);
        assert_eq!(t.take_due(ms(35)), 3);
        assert_eq!(t.take_due(ms(39)), 0);
        assert_eq!(t.take_due(ms(40)), 1);
        assert_eq!(t.next_due(), ms(50));
        assert_eq!(t.take_due(ms(0)), 0);
    }
}
