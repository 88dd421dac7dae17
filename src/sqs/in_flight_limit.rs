//! How many batches may be in flight to one queue: a window that finds the rate the queue
//! takes, the way TCP finds a path's. A round trip of 20 ms lets 16 batches carry only
//! 8,000 records a second, while a FIFO queue without high-throughput mode throttles above
//! 300 requests a second; no fixed number suits both.
//!
//! The window starts at [`INITIAL`]. While it is what holds batches back (it was full when a
//! batch came back, and another was due), each such return widens it by one, which doubles
//! it every round trip, until SQS first throttles; after that it widens by one per window's
//! worth of returns, about one per round trip. A throttled batch halves it, at most once per
//! round trip: batches that were sent before the last cut were sent under the old window and
//! say nothing new. It never leaves `1..=ceiling`.

use std::time::Instant;

/// The window a queue starts with.
pub const INITIAL: usize = 16;

/// What a batch's return tells the window.
#[derive(Clone, Copy, Debug)]
pub struct Returned {
    /// When the batch was first sent.
    pub sent_at: Instant,
    /// SQS throttled one of its requests.
    pub throttled: bool,
    /// The window was full when it returned, and another batch was due.
    pub window_full: bool,
}

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

/// How a return moved the window.
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

    /// Takes in one batch's return; says how the window moved, if it did.
    pub fn returned(&mut self, batch: Returned) -> Option<Change> {
        if batch.throttled {
            return self.cut(batch.sent_at);
        }
        if !batch.window_full || self.limit >= self.ceiling {
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

    fn cut(&mut self, sent_at: Instant) -> Option<Change> {
        if self.cut_at.is_some_and(|cut_at| sent_at < cut_at) {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn full(sent_at: Instant) -> Returned {
        Returned {
            sent_at,
            throttled: false,
            window_full: true,
        }
    }

    fn throttled(sent_at: Instant) -> Returned {
        Returned {
            sent_at,
            throttled: true,
            window_full: true,
        }
    }

    /// Returns `n` batches sent now with the window full.
    fn full_returns(limit: &mut InFlightLimit, n: usize) {
        for _ in 0..n {
            limit.returned(full(Instant::now()));
        }
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
        assert_eq!(limit.returned(full(Instant::now())), None);
    }

    #[test]
    fn a_window_that_is_not_full_does_not_grow() {
        let mut limit = InFlightLimit::new(128);
        for _ in 0..1_000 {
            let change = limit.returned(Returned {
                sent_at: Instant::now(),
                throttled: false,
                window_full: false,
            });
            assert_eq!(change, None);
        }
        assert_eq!(limit.get(), INITIAL);
    }

    #[test]
    fn a_throttle_halves_the_window_and_growth_then_takes_a_window_per_step() {
        let mut limit = InFlightLimit::new(128);
        full_returns(&mut limit, 48);
        assert_eq!(limit.get(), 64);
        assert_eq!(limit.returned(throttled(Instant::now())), Some(Change::Cut));
        assert_eq!(limit.get(), 32);

        full_returns(&mut limit, 31);
        assert_eq!(
            limit.get(),
            32,
            "a step needs a whole window of full returns"
        );
        assert_eq!(limit.returned(full(Instant::now())), Some(Change::Widened));
        assert_eq!(limit.get(), 33);
    }

    #[test]
    fn batches_sent_before_a_cut_do_not_cut_again() {
        let mut limit = InFlightLimit::new(128);
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(limit.returned(throttled(before)), Some(Change::Cut));
        assert_eq!(limit.get(), INITIAL / 2);
        for _ in 0..10 {
            assert_eq!(limit.returned(throttled(before)), None);
        }
        assert_eq!(
            limit.get(),
            INITIAL / 2,
            "one round trip's throttles cut once"
        );

        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(limit.returned(throttled(Instant::now())), Some(Change::Cut));
        assert_eq!(limit.get(), INITIAL / 4);
    }

    #[test]
    fn never_cut_below_one_batch() {
        let mut limit = InFlightLimit::new(128);
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(1));
            limit.returned(throttled(Instant::now()));
        }
        assert_eq!(limit.get(), 1);
        full_returns(&mut limit, 1);
        assert_eq!(
            limit.get(),
            2,
            "a window of one grows with each full return"
        );
    }
}
