//! The faults a stub injects. Counted faults (`throttle_next`, `fail_next`, `reset_next`) hit
//! the next requests and count down; rates hit requests or entries at random; the rest hold
//! while set.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every request's round trip.
    pub delay_ms: u64,
    /// The next N requests are throttled (`RequestThrottled`).
    pub throttle_next: u32,
    /// The next N requests fail with HTTP 500.
    pub fail_next: u32,
    /// The next N requests get their connection closed without an answer.
    pub reset_next: u32,
    /// Share of requests throttled, 0 to 1.
    pub throttle_rate: f64,
    /// Requests a second the stub takes, its queues together, as SQS's quota of one queue
    /// would (300 for a FIFO queue without high-throughput mode); the rest are throttled.
    pub request_quota_per_second: Option<u32>,
    /// Share of requests that fail with HTTP 500, 0 to 1.
    pub fail_rate: f64,
    /// Share of connections closed without an answer, 0 to 1.
    pub reset_rate: f64,
    /// Share of requests processed whose answer is then lost with the connection, so that
    /// the sender must resend what SQS already took, 0 to 1.
    pub lose_reply_rate: f64,
    /// Share of entries failed inside a 200 with `InternalError`, 0 to 1.
    pub entry_fail_rate: f64,
    /// Entries whose body contains this text fail inside a 200 with `InvalidMessageContents`
    /// (a sender fault), as SQS refuses content.
    pub refuse_bodies_containing: Option<String>,
    /// Every send is refused with `AccessDenied` while set.
    pub deny_sends: bool,
    /// Queues whose name contains this text answer `QueueDoesNotExist`.
    pub missing_queues_containing: Option<String>,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestFault {
    None,
    Throttle,
    ServerError,
    Reset,
}

impl Faults {
    pub(super) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// Decides the fate of the next request; `roll` draws a number in 0..1.
    pub(super) fn next_request(&mut self, roll: &mut impl FnMut() -> f64) -> RequestFault {
        if self.reset_next > 0 {
            self.reset_next -= 1;
            return RequestFault::Reset;
        }
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            return RequestFault::Throttle;
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return RequestFault::ServerError;
        }
        if roll() < self.reset_rate {
            return RequestFault::Reset;
        }
        if roll() < self.throttle_rate {
            return RequestFault::Throttle;
        }
        if roll() < self.fail_rate {
            return RequestFault::ServerError;
        }
        RequestFault::None
    }
}
