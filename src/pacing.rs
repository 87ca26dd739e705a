//! Client-side pacing of writes to the API server: at most so many requests in flight, at
//! most so many started per second, so a full resync on a large cluster cannot flood the
//! API server; and holding updates back until they settle, so a burst of changes makes
//! one write. The bucket and the memories are pure (time passed in); [`Pacer`] is the
//! async shell.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens at `at`; negative when reservations ran ahead of the refill.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate or burst below one is raised to one: a bucket that never
    /// refills would stop the writes for good.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(1.0),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Takes a token for a request and says how long to wait before sending it: zero while
    /// the bucket holds tokens, else the time until the refill covers this reservation
    /// (reservations queue up behind each other, so waiters keep the rate).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Takes a token if one is there now; `false` (and nothing taken) when not — for
    /// requests that are dropped rather than delayed.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Limits of the controller's writes to the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct Pacing {
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Requests started per second, sustained.
    pub writes_per_second: f64,
    /// Requests that may start at once after a quiet time.
    pub write_burst: f64,
    /// Events published per second, sustained; events beyond the budget are dropped and
    /// counted (an event is a courtesy, a write is the work).
    pub events_per_second: f64,
    /// Events that may go out at once.
    pub event_burst: f64,
    /// A device status that only moves its counts waits this long after the device's last
    /// status write ([`LastWrites`]).
    pub progress_interval: Duration,
    /// An update of an existing TunnelPort goes out once its desired content has stayed
    /// the same this long ([`Settling`]): while `kubectl apply` (or a delete) brings the
    /// devices behind a VTEP one by one, the port is written once for the lot instead of
    /// once per device. Deletions are not held, new ports only in a bulk change
    /// (`bulk_creates`).
    pub update_settle: Duration,
    /// ... but an update waits at most this long, however often its content changes.
    pub update_max_wait: Duration,
    /// A pass that would create more TunnelPorts than this is part of a bulk change (a
    /// `kubectl apply` of many devices): its new ports settle like updates, so each is
    /// created with all the devices of its VTEP instead of created and then rewritten.
    /// A few new ports (one device onto ten nodes) go out at once.
    pub bulk_creates: usize,
    /// Such count-only updates written per second over all devices: during a rollout of
    /// a thousand devices they would otherwise take a third of a small API server's
    /// writes away from the TunnelPorts.
    pub progress_per_second: f64,
}

impl Default for Pacing {
    fn default() -> Self {
        // 32 in flight keeps a 2-core API server busy without queueing past its default
        // max-mutating-requests-inflight (200), and leaves room for the agents' writes;
        // 250/s (500 burst) lets 2 000 TunnelPorts be applied in well under 10 s while a
        // resync of 100 000 unchanged objects writes nothing at all.
        Pacing {
            max_in_flight: 32,
            writes_per_second: 250.0,
            write_burst: 500.0,
            events_per_second: 10.0,
            event_burst: 50.0,
            // `kubectl get remotedevices -w` still moves every few seconds during a
            // rollout; Ready, failures and new node sets are written at once.
            progress_interval: Duration::from_secs(5),
            // Longer than the gap between two devices of one `kubectl apply`, even on a
            // busy server; short enough that one device added by hand is not kept long.
            update_settle: Duration::from_millis(300),
            update_max_wait: Duration::from_secs(5),
            bulk_creates: 50,
            progress_per_second: 20.0,
        }
    }
}

impl Pacing {
    /// One write at a time, unlimited rate (tests that check the exact order of requests).
    pub fn serial() -> Self {
        Pacing {
            max_in_flight: 1,
            writes_per_second: 1e9,
            write_burst: 1e9,
            events_per_second: 1e9,
            event_burst: 1e9,
            progress_interval: Duration::ZERO,
            update_settle: Duration::ZERO,
            update_max_wait: Duration::ZERO,
            bulk_creates: usize::MAX,
            progress_per_second: 1e9,
        }
    }
}

/// When each object was last written, so updates to it can be held back (a device status
/// whose count moves with every agent's report). Pure data: the caller passes the time.
#[derive(Debug)]
pub struct LastWrites<K> {
    at: HashMap<K, Instant>,
    interval: Duration,
}

impl<K: Hash + Eq> LastWrites<K> {
    /// Updates wait until `interval` after the object's last write.
    pub fn new(interval: Duration) -> Self {
        LastWrites {
            at: HashMap::new(),
            interval,
        }
    }

    /// Notes a write of `key` at `now`; entries too old to hold anything back are dropped.
    pub fn record(&mut self, key: K, now: Instant) {
        let interval = self.interval;
        if self.at.len() > 1024 {
            self.at
                .retain(|_, at| now.saturating_duration_since(*at) < interval);
        }
        self.at.insert(key, now);
    }

    /// When an update of `key` may go out: `None` at once, else the time it is due.
    pub fn held_until(&self, key: &K, now: Instant) -> Option<Instant> {
        let due = *self.at.get(key)? + self.interval;
        (due > now).then_some(due)
    }
}

/// Pending updates and since when their content has been what it is, so an update goes
/// out once it settled. Pure data: the caller passes the time.
#[derive(Debug)]
pub struct Settling<K, V> {
    pending: HashMap<K, Pending<V>>,
    settle: Duration,
    max_wait: Duration,
}

#[derive(Debug)]
struct Pending<V> {
    value: V,
    /// When `value` was first seen.
    since: Instant,
    /// When an update of this key was first held.
    first: Instant,
}

impl<K: Hash + Eq + Clone, V: PartialEq + Clone> Settling<K, V> {
    /// Updates go out once unchanged for `settle`, or `max_wait` after first held.
    pub fn new(settle: Duration, max_wait: Duration) -> Self {
        Settling {
            pending: HashMap::new(),
            settle,
            max_wait,
        }
    }

    /// Whether the update of `key` to `value` may go out at `now` (`None`), else when to
    /// look again. Forgets the key once it may go.
    pub fn held_until(&mut self, key: &K, value: &V, now: Instant) -> Option<Instant> {
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            value: value.clone(),
            since: now,
            first: now,
        });
        if entry.value != *value {
            entry.value = value.clone();
            entry.since = now;
        }
        let due = (entry.since + self.settle).min(entry.first + self.max_wait);
        if due > now {
            return Some(due);
        }
        self.pending.remove(key);
        None
    }

    /// Forgets every key not in `still_pending` (written meanwhile, or no longer wanted).
    pub fn retain(&mut self, still_pending: impl Fn(&K) -> bool) {
        self.pending.retain(|k, _| still_pending(k));
    }
}

/// The earlier of a time already due (if any) and `at`.
pub fn earliest<T: Ord>(due: Option<T>, at: T) -> T {
    match due {
        Some(due) => due.min(at),
        None => at,
    }
}

/// Sleeps until `at`, or for ever when there is nothing to wait for.
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Something that signals changes: a [`Notify`](tokio::sync::Notify) poked per watch
/// event, or a watch channel.
pub trait Changes {
    /// Waits for the next change; `false` once no change can come any more.
    fn changed(&mut self) -> impl Future<Output = bool> + Send;
}

impl Changes for &tokio::sync::Notify {
    fn changed(&mut self) -> impl Future<Output = bool> + Send {
        let notify = *self;
        async move {
            notify.notified().await;
            true
        }
    }
}

impl<T: Send + Sync> Changes for &mut tokio::sync::watch::Receiver<T> {
    async fn changed(&mut self) -> bool {
        tokio::sync::watch::Receiver::changed(self).await.is_ok()
    }
}

/// Whether a change that woke a loop waiting since `idle_since` is acted on at once: after
/// a quiet spell of `quiet` it most likely stands alone (one `kubectl apply`), and
/// gathering would only delay it; soon after the loop's last step it belongs to a burst.
pub fn acts_at_once(
    idle_since: tokio::time::Instant,
    now: tokio::time::Instant,
    quiet: Duration,
) -> bool {
    now.saturating_duration_since(idle_since) >= quiet
}

/// The debounce of the controller's passes, the gateway loop and the node loop, in one
/// home: a change after a quiet spell is taken at once ([`acts_at_once`]); one that follows
/// the loop's last step closely starts gathering `changes` ([`until_quiet`]; other wake-ups
/// of the loop are not waited for). `false` when the loop must end.
pub async fn gather_burst(
    changes: impl Changes,
    idle_since: tokio::time::Instant,
    quiet: Duration,
    max_wait: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    if acts_at_once(idle_since, tokio::time::Instant::now(), quiet) {
        return !cancel.is_cancelled();
    }
    until_quiet(changes, quiet, max_wait, cancel).await
}

/// Gathers a burst of changes: returns `true` once none came for `quiet`, or at the
/// latest `max_wait` after it started; `false` when `cancel` fires or the changes end.
pub async fn until_quiet(
    mut changes: impl Changes,
    quiet: Duration,
    max_wait: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    let latest = tokio::time::Instant::now() + max_wait;
    loop {
        let quiet_until = (tokio::time::Instant::now() + quiet).min(latest);
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep_until(quiet_until) => return true,
            alive = changes.changed() => if !alive { return false },
        }
    }
}

/// The async shell: admits a write once a slot is free and the bucket allows it.
#[derive(Debug)]
pub struct Pacer {
    in_flight: Semaphore,
    writes: Mutex<TokenBucket>,
    events: Mutex<TokenBucket>,
    progress: Mutex<TokenBucket>,
}

impl Pacer {
    /// A pacer with `pacing`'s limits, its buckets full.
    pub fn new(pacing: &Pacing) -> Self {
        let now = Instant::now();
        Pacer {
            in_flight: Semaphore::new(pacing.max_in_flight.max(1)),
            writes: Mutex::new(TokenBucket::new(
                pacing.writes_per_second,
                pacing.write_burst,
                now,
            )),
            events: Mutex::new(TokenBucket::new(
                pacing.events_per_second,
                pacing.event_burst,
                now,
            )),
            progress: Mutex::new(TokenBucket::new(
                pacing.progress_per_second,
                pacing.progress_per_second,
                now,
            )),
        }
    }

    /// Waits for a free slot, then for the rate; the write runs while the permit lives.
    pub async fn admit(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed.
        let permit = self.in_flight.acquire().await.expect("open semaphore");
        let wait = lock(&self.writes).reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        permit
    }

    /// Whether an event may go out now (else it is dropped).
    pub fn event_allowed(&self) -> bool {
        lock(&self.events).try_take(Instant::now())
    }

    /// Whether a count-only status update may go out now (else it waits for a later pass).
    pub fn progress_allowed(&self) -> bool {
        lock(&self.progress).try_take(Instant::now())
    }
}

/// The value behind its lock. What this module's users lock (a bucket, a memory of
/// writes) is a few field updates that a panic cannot leave half done, so a poisoned lock
/// is taken over.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reservations_wait_for_the_refill_once_the_burst_is_spent() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 3.0, t0);
        // (time since t0, wait the reservation gets)
        let cases = [
            (0, 0),   // burst
            (0, 0),   // burst
            (0, 0),   // burst spent
            (0, 10),  // one token at 100/s
            (0, 20),  // queued behind the previous one
            (30, 0),  // 30 ms refilled 3 tokens: the two waiters' debt paid, one left
            (30, 10), // and that one is gone again
        ];
        for (i, (at, wait)) in cases.into_iter().enumerate() {
            let got = b.reserve(t0 + at * MS);
            let want = wait * MS;
            assert!(
                got.abs_diff(want) < Duration::from_micros(50),
                "case {i}: waited {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn the_bucket_never_holds_more_than_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 2.0, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later) && b.try_take(later));
        assert!(
            !b.try_take(later),
            "a minute idle still refills only the burst"
        );
        assert_eq!(b.reserve(later), MS);
    }

    #[test]
    fn dropping_takes_nothing_when_empty() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        assert!(b.try_take(t0));
        for _ in 0..5 {
            assert!(!b.try_take(t0 + 50 * MS));
        }
        // The refused attempts did not dig a hole: 100 ms brings the next token.
        assert!(b.try_take(t0 + 100 * MS));
    }

    #[test]
    fn time_going_backwards_takes_nothing_away() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_millis(500)));
        assert!(b.try_take(t0 + 100 * MS));
    }

    #[test]
    fn degenerate_limits_still_let_writes_through() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 0.0, t0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::from_secs(1));
    }

    #[test]
    fn updates_wait_only_after_a_recent_write() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut last = LastWrites::new(5 * s);
        assert_eq!(last.held_until(&"a", t0), None, "never written");
        last.record("a", t0);
        // (now) → held until
        let cases = [
            (t0, Some(t0 + 5 * s)),
            (t0 + s, Some(t0 + 5 * s)),
            (t0 + 5 * s, None),
            (t0 + 9 * s, None),
        ];
        for (i, (now, want)) in cases.into_iter().enumerate() {
            assert_eq!(last.held_until(&"a", now), want, "case {i}");
        }
        assert_eq!(last.held_until(&"b", t0 + s), None, "another object");
        last.record("a", t0 + 7 * s);
        assert_eq!(
            last.held_until(&"a", t0 + 8 * s),
            Some(t0 + 12 * s),
            "a rewrite restarts it"
        );
    }

    #[test]
    fn an_update_goes_out_once_settled_or_after_the_longest_wait() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s: Settling<&str, u32> =
            Settling::new(Duration::from_millis(300), Duration::from_millis(1000));
        // (now, content) → held until
        let cases = [
            (0, 1, Some(ms(300))),   // first seen: settle
            (200, 1, Some(ms(300))), // unchanged: same due
            (250, 2, Some(ms(550))), // changed: settle again
            (550, 2, None),          // settled: write
            (600, 3, Some(ms(900))), // a new round starts afresh
            (800, 4, Some(ms(1100))),
            (1000, 5, Some(ms(1300))),
            (1300, 6, Some(ms(1600))), // 700 ms after it was first held…
            (1600, 7, None),           // …and 1000 ms: out, changing or not
        ];
        for (i, (now, v, want)) in cases.into_iter().enumerate() {
            assert_eq!(s.held_until(&"tp", &v, ms(now)), want, "case {i}");
        }
        s.held_until(&"gone", &1, ms(0));
        s.retain(|k| *k != "gone");
        assert_eq!(
            s.held_until(&"gone", &1, ms(2000)),
            Some(ms(2300)),
            "forgotten"
        );
    }

    #[test]
    fn old_entries_are_dropped_as_the_memory_grows() {
        let t0 = Instant::now();
        let mut last = LastWrites::new(Duration::from_secs(1));
        for i in 0..2000 {
            last.record(i, t0);
        }
        let later = t0 + Duration::from_secs(2);
        last.record(-1, later);
        assert_eq!(
            last.at.len(),
            1,
            "entries past the interval hold nothing back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_ends_at_quiet_or_at_the_longest_wait() {
        use tokio::time::{Instant as TInstant, sleep};
        let cancel = tokio_util::sync::CancellationToken::new();
        let (quiet, max) = (Duration::from_millis(30), Duration::from_millis(200));
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        // (gap between changes in ms, changes) → returns after ms
        let cases = [(0, 0, 30), (10, 3, 60), (20, 100, 200)];
        for (gap, count, want) in cases {
            let poker = {
                let notify = notify.clone();
                tokio::spawn(async move {
                    for _ in 0..count {
                        sleep(Duration::from_millis(gap)).await;
                        notify.notify_one();
                    }
                })
            };
            let started = TInstant::now();
            assert!(until_quiet(&*notify, quiet, max, &cancel).await);
            assert_eq!(started.elapsed(), Duration::from_millis(want), "gap {gap}");
            poker.abort();
        }
        let (tx, mut rx) = tokio::sync::watch::channel(());
        drop(tx);
        assert!(
            !until_quiet(&mut rx, quiet, max, &cancel).await,
            "the channel ended"
        );
        cancel.cancel();
        assert!(
            !until_quiet(&*notify, quiet, max, &cancel).await,
            "cancelled"
        );
    }

    #[test]
    fn a_change_after_a_quiet_spell_is_taken_at_once() {
        let quiet = Duration::from_millis(50);
        let idle_since = tokio::time::Instant::now();
        // (ms the loop had been waiting when the change came, taken at once)
        let cases = [(0, false), (49, false), (50, true), (5_000, true)];
        for (waited, at_once) in cases {
            let now = idle_since + Duration::from_millis(waited);
            assert_eq!(acts_at_once(idle_since, now, quiet), at_once, "{waited} ms");
        }
        // A clock read before `idle_since` (another thread's Instant) is no quiet spell.
        let earlier = idle_since - Duration::from_millis(1);
        assert!(!acts_at_once(idle_since, earlier, quiet));
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_change_soon_after_the_last_step_is_gathered() {
        use tokio::time::{Instant as TInstant, sleep};
        let cancel = tokio_util::sync::CancellationToken::new();
        let (quiet, max) = (Duration::from_millis(30), Duration::from_millis(200));
        let notify = tokio::sync::Notify::new();
        // Idle for longer than `quiet`: no wait at all.
        let idle_since = TInstant::now();
        sleep(Duration::from_millis(40)).await;
        let woken = TInstant::now();
        assert!(gather_burst(&notify, idle_since, quiet, max, &cancel).await);
        assert_eq!(woken.elapsed(), Duration::ZERO);
        // Woken 10 ms after the last step: gathered until 30 ms of quiet.
        let idle_since = TInstant::now();
        sleep(Duration::from_millis(10)).await;
        let woken = TInstant::now();
        assert!(gather_burst(&notify, idle_since, quiet, max, &cancel).await);
        assert_eq!(woken.elapsed(), quiet);
        cancel.cancel();
        assert!(
            !gather_burst(&notify, TInstant::now() - max, quiet, max, &cancel).await,
            "cancelled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_bounds_requests_in_flight() {
        let pacer = Pacer::new(&Pacing {
            max_in_flight: 2,
            ..Pacing::serial()
        });
        let a = pacer.admit().await;
        let _b = pacer.admit().await;
        let third = tokio::time::timeout(Duration::from_secs(1), pacer.admit()).await;
        assert!(third.is_err(), "a third write started with two in flight");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(1), pacer.admit()).await;
        assert!(third.is_ok(), "a freed slot lets the next write start");
    }
}
