//! Exponential backoff between failed attempts: reconcile passes, API writes, watch
//! reconnects, flow monitor restarts. One policy, one home.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays that double from `min` up to `max`, reset by a success. With jitter, each delay
/// is drawn from its upper half, so many clients that failed together (every agent when
/// the API server went away) do not come back in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    jitter: bool,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            jitter: false,
        }
    }

    /// The same with jitter: each delay lies between half of it and all of it.
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The delay before the next attempt, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.failures = self.failures.saturating_add(1);
        let delay = self.min.saturating_mul(factor).min(self.max);
        if self.jitter {
            // A random fraction in [0.5, 1): std's per-process random hasher keys suffice.
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            delay.mul_f64(0.5 + (random % 1024) as f64 / 2048.0)
        } else {
            delay
        }
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Watch streams retry after an error (the API server gone, a relist refused) with this
/// policy: from 250 ms doubling to 3 s, jittered. client-go's reflector goes up to 30 s;
/// we stop at 3 s so that a change made right after the API server returns reaches the
/// controller and the agents within a few seconds, while a few hundred agents still make
/// only about a hundred reconnects a second against a server that is away.
pub fn watch_backoff() -> WatchBackoff {
    WatchBackoff(Backoff::new(Duration::from_millis(250), Duration::from_secs(3)).with_jitter())
}

/// [`watch_backoff`] in the shape kube's watch streams take.
pub struct WatchBackoff(Backoff);

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next_delay())
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
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

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let ms = Duration::from_millis;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(ms(1000), ms(4000)).with_jitter();
            let d = b.next_delay();
            assert!(d >= ms(500) && d < ms(1000), "{d:?}");
            seen.insert(d);
            for _ in 0..5 {
                b.next_delay();
            }
            let capped = b.next_delay();
            assert!(capped >= ms(2000) && capped < ms(4000), "{capped:?}");
        }
        assert!(seen.len() > 10, "jitter varies: {seen:?}");
    }

    #[test]
    fn watch_backoff_is_capped_at_three_seconds_and_resets() {
        use kube::runtime::utils::Backoff as _;
        let mut b = watch_backoff();
        let first = b.next().unwrap();
        assert!(first <= Duration::from_millis(250), "{first:?}");
        let later: Vec<Duration> = (0..20).map(|_| b.next().unwrap()).collect();
        assert!(
            later.iter().all(|d| *d <= Duration::from_secs(3)),
            "{later:?}"
        );
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(250));
    }
}
