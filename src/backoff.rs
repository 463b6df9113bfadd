//! Capped exponential backoff with jitter, shared by the Docker watcher, the pumps and the
//! transports, so every retry loop in luaspout is bounded in rate and never spins.

use std::time::Duration;

/// The delay sequence of one retry loop; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        assert!(!min.is_zero() && min <= max, "backoff needs 0 < min <= max");
        Backoff { min, max, current: min }
    }

    /// The next delay: the current step with up to 25 % jitter, so many sinks or pumps that
    /// failed together do not retry in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter_range = base.as_nanos() as u64 / 4;
        let jitter = if jitter_range == 0 { 0 } else { cheap_random() % jitter_range };
        base + Duration::from_nanos(jitter)
    }

    /// Starts over from `min`, after the operation succeeded.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// Enough randomness for jitter without a dependency: the low bits of the clock, mixed.
fn cheap_random() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert!((100..125).contains(&d[0]), "{d:?}");
        assert!((200..250).contains(&d[1]), "{d:?}");
        assert!((400..500).contains(&d[2]), "{d:?}");
        assert!((400..500).contains(&d[3]), "{d:?}");
        b.reset();
        assert!((100..125).contains(&b.next_delay().as_millis()));
    }
}
