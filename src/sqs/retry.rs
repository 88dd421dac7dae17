//! Exponential backoff with full jitter: the delay before attempt `n + 1` is drawn evenly
//! from zero to `min(cap, initial * 2^n)`, so that many senders that failed together do not
//! come back together. There is no limit on attempts: a record is never dropped because SQS
//! was unavailable for a while.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of the delay after `failures` consecutive failures (1 or more).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        self.initial.saturating_mul(1 << exponent).min(self.cap)
    }

    /// A delay drawn with full jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            cap: Duration::from_secs(20),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(8), Duration::from_millis(12_800));
        assert_eq!(b.ceiling(9), Duration::from_secs(20));
        assert_eq!(b.ceiling(1_000_000), Duration::from_secs(20));
    }

    #[test]
    fn delay_stays_under_the_ceiling() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        };
        for failures in 1..20 {
            assert!(b.delay(failures) <= b.ceiling(failures));
        }
    }
}
