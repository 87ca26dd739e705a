//! Exponential backoff between failed attempts (reconcile passes, flow monitor restarts).

use std::time::Duration;

/// Delays that double from `min` up to `max`, reset by a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.failures = self.failures.saturating_add(1);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(500), Duration::from_secs(60));
        let got: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let want = [
            500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000,
        ]
        .map(ms);
        assert_eq!(got, want);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), ms(60000), "no overflow after many failures");
        b.reset();
        assert_eq!(b.next_delay(), ms(500));
    }
}
