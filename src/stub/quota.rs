//! A request quota, as SQS keeps one per queue and action: a FIFO queue without
//! high-throughput mode takes 300 `SendMessageBatch` calls a second and throttles the rest.
//! A token bucket that holds one second's worth, so a short burst passes.

use std::time::Instant;

#[derive(Debug, Default)]
pub(super) struct RequestQuota {
    tokens: f64,
    refilled: Option<Instant>,
}

impl RequestQuota {
    /// True when a request at `now` fits `per_second`; it then takes its token.
    pub(super) fn admit(&mut self, per_second: u32, now: Instant) -> bool {
        let capacity = f64::from(per_second);
        self.tokens = match self.refilled {
            None => capacity,
            Some(then) => {
                let earned = now.saturating_duration_since(then).as_secs_f64() * capacity;
                (self.tokens + earned).min(capacity)
            }
        };
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn takes_a_second_worth_at_once_then_the_rate() {
        let mut quota = RequestQuota::default();
        let start = Instant::now();
        let burst = (0..20).filter(|_| quota.admit(10, start)).count();
        assert_eq!(burst, 10);

        let later = start + Duration::from_millis(300);
        let refilled = (0..20).filter(|_| quota.admit(10, later)).count();
        assert_eq!(refilled, 3, "300 ms at 10 a second earns 3");

        let idle = later + Duration::from_secs(60);
        let capped = (0..20).filter(|_| quota.admit(10, idle)).count();
        assert_eq!(capped, 10, "an idle bucket holds one second's worth");
    }
}
