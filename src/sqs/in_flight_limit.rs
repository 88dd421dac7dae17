//! How many batches may be in flight to one queue: a window that finds the rate the queue
//! takes, the way TCP finds a path's. A round trip of 20 ms lets 16 batches carry only
//! 8,000 records a second, while a FIFO queue without high-throughput mode throttles above
//! 300 requests a second; no fixed number suits both.
//!
//! The window starts at [`INITIAL`]. While it is what holds batches back (it was full when a
//! batch came back, and another was due), each such return widens it by one, which doubles
//! it every round trip, until SQS first throttles; after that it widens by one per window's
//! worth of returns, about one per round trip. A throttled request halves it as soon as its
//! answer comes, not when its batch is done retrying, and at most once per round trip:
//! requests and batches sent before the last cut were sent under the old window and say
//! nothing new. It never leaves `1..=ceiling`.
//!
//! "Full" is judged by the loop, which counts a batch in flight until it has taken in its
//! end: when the loop itself is slow (a CPU-bound backlog at a 0 ms round trip), the window
//! widens too, though SQS was not the limit.

use std::sync::Mutex;
use std::time::Instant;

/// The window a queue starts with.
pub const INITIAL: usize = 16;

/// The window of one queue.
#[derive(Debug)]
pub struct InFlightLimit {
    limit: usize,
    ceiling: usize,
    /// Until the first throttle the window grows by one per full return, not per window.
    slow_start: bool,
    /// Full returns counted toward the next step, after slow start.
    credit: usize,
    /// When the window was last cut.
    cut_at: Option<Instant>,
}

/// How the window moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Widened,
    Cut,
}

impl InFlightLimit {
    /// A window of at most `ceiling` batches (at least one).
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: INITIAL.min(ceiling),
            ceiling,
            slow_start: true,
            credit: 0,
            cut_at: None,
        }
    }

    /// Batches that may be in flight now.
    pub fn get(&self) -> usize {
        self.limit
    }

    /// Takes in the end of a batch first sent at `sent_at`; `window_full` says the window was
    /// full when it ended and another batch was due.
    pub fn returned(&mut self, sent_at: Instant, window_full: bool) -> Option<Change> {
        if !window_full || self.limit >= self.ceiling || self.sent_before_cut(sent_at) {
            return None;
        }
        if !self.slow_start {
            self.credit += 1;
            if self.credit < self.limit {
                return None;
            }
            self.credit = 0;
        }
        self.limit += 1;
        Some(Change::Widened)
    }

    /// Takes in a throttled request sent at `sent_at`.
    pub fn throttled(&mut self, sent_at: Instant) -> Option<Change> {
        if self.sent_before_cut(sent_at) {
            return None;
        }
        self.cut_at = Some(Instant::now());
        self.slow_start = false;
        self.credit = 0;
        let halved = (self.limit / 2).max(1);
        let changed = halved != self.limit;
        self.limit = halved;
        changed.then_some(Change::Cut)
    }

    fn sent_before_cut(&self, sent_at: Instant) -> bool {
        self.cut_at.is_some_and(|cut_at| sent_at < cut_at)
    }
}

/// The send time of the latest throttled request of a queue's batches, raised by them as the
/// answer comes and taken by the loop before it starts more.
#[derive(Debug, Default)]
pub struct ThrottleSignal(Mutex<Option<Instant>>);

impl ThrottleSignal {
    pub fn raise(&self, sent_at: Instant) {
        let mut latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *latest = Some(latest.map_or(sent_at, |seen| seen.max(sent_at)));
    }

    pub fn take(&self) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Ends `n` batches sent now with the window full.
    fn full_returns(limit: &mut InFlightLimit, n: usize) {
        for _ in 0..n {
            limit.returned(Instant::now(), true);
        }
    }

    /// A moment strictly after every earlier one, so that it is after the last cut.
    fn later() -> Instant {
        std::thread::sleep(Duration::from_millis(1));
        Instant::now()
    }

    #[test]
    fn starts_at_the_initial_window_or_the_ceiling_below_it() {
        assert_eq!(InFlightLimit::new(128).get(), INITIAL);
        assert_eq!(InFlightLimit::new(4).get(), 4);
        assert_eq!(InFlightLimit::new(0).get(), 1);
    }

    #[test]
    fn doubles_each_window_until_the_first_throttle_and_stops_at_the_ceiling() {
        let mut limit = InFlightLimit::new(100);
        full_returns(&mut limit, INITIAL);
        assert_eq!(limit.get(), 2 * INITIAL, "one window of returns doubles it");
        full_returns(&mut limit, 1_000);
        assert_eq!(limit.get(), 100);
        assert_eq!(limit.returned(Instant::now(), true), None);
    }

    #[test]
    fn a_window_that_is_not_full_does_not_grow() {
        let mut limit = InFlightLimit::new(128);
        for _ in 0..1_000 {
            assert_eq!(limit.returned(Instant::now(), false), None);
        }
        assert_eq!(limit.get(), INITIAL);
    }

    #[test]
    fn a_throttle_halves_the_window_and_growth_then_takes_a_window_per_step() {
        let mut limit = InFlightLimit::new(128);
        full_returns(&mut limit, 48);
        assert_eq!(limit.get(), 64);
        assert_eq!(limit.throttled(Instant::now()), Some(Change::Cut));
        assert_eq!(limit.get(), 32);

        let after_cut = later();
        for _ in 0..31 {
            limit.returned(after_cut, true);
        }
        assert_eq!(
            limit.get(),
            32,
            "a step needs a whole window of full returns"
        );
        assert_eq!(limit.returned(after_cut, true), Some(Change::Widened));
        assert_eq!(limit.get(), 33);
    }

    #[test]
    fn what_was_sent_before_a_cut_neither_cuts_again_nor_widens() {
        let mut limit = InFlightLimit::new(128);
        let before = Instant::now();
        assert_eq!(limit.throttled(later()), Some(Change::Cut));
        assert_eq!(limit.get(), INITIAL / 2);
        for _ in 0..100 {
            assert_eq!(limit.throttled(before), None);
            assert_eq!(limit.returned(before, true), None);
        }
        assert_eq!(
            limit.get(),
            INITIAL / 2,
            "one round trip's news moves it once"
        );

        assert_eq!(limit.throttled(later()), Some(Change::Cut));
        assert_eq!(limit.get(), INITIAL / 4);
    }

    #[test]
    fn never_cut_below_one_batch() {
        let mut limit = InFlightLimit::new(128);
        for _ in 0..10 {
            limit.throttled(later());
        }
        assert_eq!(limit.get(), 1);
        assert_eq!(limit.returned(later(), true), Some(Change::Widened));
        assert_eq!(
            limit.get(),
            2,
            "a window of one grows with each full return"
        );
    }

    #[test]
    fn the_signal_keeps_the_latest_throttle_until_taken() {
        let signal = ThrottleSignal::default();
        assert_eq!(signal.take(), None);
        let first = Instant::now();
        let second = later();
        signal.raise(second);
        signal.raise(first);
        assert_eq!(signal.take(), Some(second));
        assert_eq!(signal.take(), None);
    }
}
