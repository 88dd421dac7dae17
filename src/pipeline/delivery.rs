//! Delivering one batch: send it, settle what SQS took, and resend only what failed, with the
//! same deduplication ids, until every entry is delivered or found undeliverable. The batch's
//! message groups stay reserved the whole time, so nothing of theirs can overtake a retry.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{debug, error, trace, warn};

use super::poison::{Halt, PoisonHandler};
use crate::admin::DestinationHealth;
use crate::kafka::progress::{PartitionKey, Progress, Ticket};
use crate::message::{OutgoingMessage, Unsendable};
use crate::metrics::{DestinationSeries, Metrics};
use crate::record::Record;
use crate::sqs::errors::{FailureClass, is_throttling};
use crate::sqs::in_flight_limit::ThrottleSignal;
use crate::sqs::retry::Backoff;
use crate::sqs::scheduler::{Batch, Queued};
use crate::sqs::send::{BatchReply, BatchSender, RequestFailure};

/// What the pipeline keeps with each queued message.
#[derive(Debug)]
pub struct Token {
    pub ticket: Ticket,
    pub timestamp_ms: Option<i64>,
    /// Bytes this record holds against the backpressure budget.
    pub buffered: usize,
    /// The record itself, kept only when it may have to be dead-lettered.
    pub record: Option<Box<Record>>,
}

/// Bytes a queued record holds against the budget: the message (its body, ids and
/// attributes), the queue entry, and the record's value when the record is kept for
/// dead-lettering and the body does not share it (a raw body that is SQS text shares the
/// value's bytes; a base64 or envelope body is its own). The record's key, headers and
/// struct count even when it is dropped after mapping: they stand in for what is not
/// measured (the allocator's rounding, the queues' spare capacity, the offset records).
pub fn held_bytes(record: &Record, message: &OutgoingMessage, record_kept: bool) -> usize {
    let value = record.value.as_ref();
    let value_len = value.map_or(0, Bytes::len);
    let body_is_value = value.is_some_and(|v| v.as_ptr() == message.body.as_ptr());
    let value_apart = if record_kept && !body_is_value {
        value_len
    } else {
        0
    };
    let ids = [&message.group_id, &message.deduplication_id]
        .into_iter()
        .flatten()
        .map(String::len)
        .sum::<usize>();
    record.buffered_bytes() - value_len
        + value_apart
        + message.size()
        + ids
        + std::mem::size_of::<Queued<Token>>()
}

impl Token {
    pub fn coordinates(&self) -> String {
        format!(
            "{}/{}@{}",
            self.ticket.key.topic, self.ticket.key.partition, self.ticket.offset
        )
    }
}

/// Everything a delivery needs, shared by the batches of one destination.
pub struct Delivery {
    pub destination: String,
    pub sender: BatchSender,
    pub progress: Arc<Progress>,
    pub poison: PoisonHandler,
    pub metrics: Arc<Metrics>,
    pub series: DestinationSeries,
    pub health: Arc<DestinationHealth>,
    /// Raised when SQS throttles a request, for the loop to narrow its window at once.
    pub throttles: ThrottleSignal,
    pub transient_backoff: Backoff,
    pub destination_backoff: Backoff,
}

/// How a batch ended.
#[derive(Debug, Default)]
pub struct Settled {
    pub groups: Vec<Arc<str>>,
    /// The bytes each entry held against the budget, by partition.
    pub buffered: Vec<(PartitionKey, usize)>,
    pub halt: Option<Halt>,
    /// When the batch was first sent; none for a record settled without one.
    pub sent_at: Option<Instant>,
}

impl Delivery {
    /// Delivers `batch`; returns once every entry is settled or the bridge must stop.
    pub async fn deliver(self: Arc<Self>, batch: Batch<Token>) -> Settled {
        let buffered = batch
            .entries
            .iter()
            .map(|q| (q.token.ticket.key.clone(), q.token.buffered))
            .collect();
        self.progress
            .start_sending(batch.entries.iter().map(|q| &q.token.ticket));
        let sent_at = Instant::now();
        let mut pending: Vec<Queued<Token>> = batch.entries;
        let mut one_per_request = false;
        let mut transient_failures = 0u32;
        let mut destination_failures = 0u32;
        let mut halt = None;

        while !pending.is_empty() && halt.is_none() {
            let take = if one_per_request { 1 } else { pending.len() };
            let rest = pending.split_off(take);
            let attempt = pending;
            let attempt_sent_at = Instant::now();
            let (mut retry, undeliverable, wait) = match self.send(&attempt).await {
                Ok(reply) => {
                    if reply.failed.iter().any(|f| is_throttling(&f.code)) {
                        self.throttles.raise(attempt_sent_at);
                    }
                    self.settle_reply(attempt, reply)
                }
                Err(failure) => {
                    if is_throttling(&failure.code) {
                        self.throttles.raise(attempt_sent_at);
                    }
                    let class = failure.class;
                    let (retry, undeliverable) =
                        self.settle_failure(attempt, &failure, &mut one_per_request);
                    (retry, undeliverable, Some(class))
                }
            };
            match wait {
                Some(FailureClass::Destination) => {
                    destination_failures += 1;
                    let delay = self.destination_backoff.delay(destination_failures);
                    self.destination_gauge(1);
                    tokio::time::sleep(delay).await;
                }
                Some(_) => {
                    transient_failures += 1;
                    tokio::time::sleep(self.transient_backoff.delay(transient_failures)).await;
                }
                None => {
                    if destination_failures > 0 {
                        self.destination_gauge(0);
                    }
                    transient_failures = 0;
                    destination_failures = 0;
                }
            }
            for (queued, problem) in undeliverable {
                let token = &queued.token;
                match self
                    .poison
                    .handle(&token.coordinates(), token.record.as_deref(), &problem)
                    .await
                {
                    Ok(()) => self.progress.complete(&token.ticket),
                    Err(stop) => halt = Some(stop),
                }
            }
            // Failed entries go first: they are older than anything after them in their group.
            retry.extend(rest);
            pending = retry;
        }
        Settled {
            groups: batch.groups,
            buffered,
            halt,
            sent_at: Some(sent_at),
        }
    }

    async fn send(&self, attempt: &[Queued<Token>]) -> Result<BatchReply, RequestFailure> {
        let destination = self.destination.as_str();
        let messages: Vec<_> = attempt.iter().map(|q| &q.message).collect();
        let bytes: usize = attempt.iter().map(|q| q.size).sum();
        self.series.batch_entries.observe(messages.len() as f64);
        self.series.batch_bytes.observe(bytes as f64);
        let result = self.sender.send(&messages).await;
        match &result {
            Ok(_) => self.health.request_succeeded(),
            Err(_) => self.health.request_failed(),
        }
        let elapsed = match &result {
            Ok(reply) => reply.elapsed,
            Err(failure) => failure.elapsed,
        };
        self.series
            .sqs_request_duration
            .observe(elapsed.as_secs_f64());
        let outcome = match &result {
            Ok(reply) if reply.failed.is_empty() => "ok",
            Ok(_) => "partial",
            Err(failure) => failure.class.as_label(),
        };
        self.metrics
            .sqs_requests
            .with_label_values(&[destination, outcome])
            .inc();
        result
    }

    /// Settles the entries SQS took; returns those to resend, those that can never be sent,
    /// and whether to wait before resending.
    #[allow(clippy::type_complexity)]
    fn settle_reply(
        &self,
        attempt: Vec<Queued<Token>>,
        reply: BatchReply,
    ) -> (
        Vec<Queued<Token>>,
        Vec<(Queued<Token>, Unsendable)>,
        Option<FailureClass>,
    ) {
        let destination = self.destination.as_str();
        self.count_ordering_faults(&attempt, &reply);
        let mut failures = reply.failed.into_iter().peekable();
        let mut retry = Vec::new();
        let mut undeliverable = Vec::new();
        let mut wait: Option<FailureClass> = None;
        let mut delivered = Vec::with_capacity(attempt.len());
        let now_ms = now_millis();
        for (index, queued) in attempt.into_iter().enumerate() {
            let failure = failures.next_if(|f| f.index == index);
            let Some(failure) = failure else {
                if let Some(timestamp) = queued.token.timestamp_ms {
                    let latency =
                        Duration::from_millis(now_ms.saturating_sub(timestamp).max(0) as u64);
                    self.series
                        .end_to_end_latency
                        .observe(latency.as_secs_f64());
                }
                delivered.push(queued);
                continue;
            };
            match failure.class {
                FailureClass::Record => {
                    let problem = Unsendable::Refused {
                        code: failure.code,
                        message: failure.message,
                    };
                    undeliverable.push((queued, problem));
                }
                class => {
                    if is_throttling(&failure.code) {
                        self.metrics
                            .sqs_throttled
                            .with_label_values(&[destination])
                            .inc();
                    }
                    trace!(destination, record = %queued.token.coordinates(), code = %failure.code, "entry failed; resending");
                    self.metrics
                        .records_retried
                        .with_label_values(&[destination, class.as_label()])
                        .inc();
                    wait = Some(match (wait, class) {
                        (Some(FailureClass::Destination), _) | (_, FailureClass::Destination) => {
                            FailureClass::Destination
                        }
                        _ => FailureClass::Transient,
                    });
                    retry.push(queued);
                }
            }
        }
        self.series.records_sent.inc_by(delivered.len() as u64);
        self.progress
            .complete_all(delivered.iter().map(|q| &q.token.ticket));
        (retry, undeliverable, wait)
    }

    /// A whole request failed: everything is resent, except that a request SQS refused for
    /// its shape is split into single entries, and a single entry refused so is undeliverable.
    #[allow(clippy::type_complexity)]
    fn settle_failure(
        &self,
        attempt: Vec<Queued<Token>>,
        failure: &RequestFailure,
        one_per_request: &mut bool,
    ) -> (Vec<Queued<Token>>, Vec<(Queued<Token>, Unsendable)>) {
        let destination = self.destination.as_str();
        match failure.class {
            FailureClass::Request | FailureClass::Record if attempt.len() == 1 => {
                let problem = Unsendable::Refused {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                };
                (
                    Vec::new(),
                    attempt.into_iter().map(|q| (q, problem.clone())).collect(),
                )
            }
            FailureClass::Request | FailureClass::Record => {
                warn!(destination, error = %failure, entries = attempt.len(), "batch refused; sending its entries one by one");
                *one_per_request = true;
                (attempt, Vec::new())
            }
            FailureClass::Destination => {
                error!(destination, error = %failure, "the queue refuses requests; retrying with backoff");
                self.metrics
                    .records_retried
                    .with_label_values(&[destination, "destination"])
                    .inc_by(attempt.len() as u64);
                (attempt, Vec::new())
            }
            FailureClass::Transient => {
                if is_throttling(&failure.code) {
                    self.metrics
                        .sqs_throttled
                        .with_label_values(&[destination])
                        .inc();
                }
                debug!(destination, error = %failure, "request failed; resending");
                self.metrics
                    .records_retried
                    .with_label_values(&[destination, "transient"])
                    .inc_by(attempt.len() as u64);
                (attempt, Vec::new())
            }
        }
    }

    /// SQS took a later entry of a group after refusing an earlier one of the same request
    /// that is to be resent: the group's order is broken in the queue. `strict_order` avoids this by construction.
    fn count_ordering_faults(&self, attempt: &[Queued<Token>], reply: &BatchReply) {
        for failure in reply
            .failed
            .iter()
            .filter(|f| f.class != FailureClass::Record)
        {
            let group = attempt[failure.index].message.group_id.as_deref();
            let Some(group) = group else { continue };
            let overtaken = reply.succeeded.iter().any(|&i| {
                i > failure.index && attempt[i].message.group_id.as_deref() == Some(group)
            });
            if overtaken {
                warn!(destination = %self.destination, record = %attempt[failure.index].token.coordinates(),
                    "SQS accepted a later record of this message group after refusing this one");
                self.metrics
                    .ordering_faults
                    .with_label_values(&[&self.destination])
                    .inc();
            }
        }
    }

    fn destination_gauge(&self, value: i64) {
        self.metrics
            .destination_failing
            .with_label_values(&[&self.destination])
            .set(value);
        self.health.set_refused(value != 0);
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;

    use super::*;

    fn record(value: &[u8]) -> Record {
        Record {
            topic: Arc::from("readings"),
            partition: 3,
            offset: 42,
            timestamp_ms: None,
            key: Some(Bytes::from_static(b"dev-1")),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
        }
    }

    fn message(body: ByteString) -> OutgoingMessage {
        OutgoingMessage {
            body,
            group_id: Some("dev-1".to_owned()),
            deduplication_id: Some("readings:3:42".to_owned()),
            attributes: Vec::new(),
        }
    }

    #[test]
    fn a_value_counts_once_and_only_while_it_is_held() {
        let record = record(&[b'x'; 4096]);
        let shared = || ByteString::try_from(record.value.clone().unwrap()).unwrap();
        let own = || ByteString::from("x".repeat(4096));
        let fixed = record.buffered_bytes() - 4096
            + "dev-1".len()
            + "readings:3:42".len()
            + std::mem::size_of::<Queued<Token>>();

        // The body is the value: counted once, whether the record is kept or not.
        assert_eq!(held_bytes(&record, &message(shared()), false), fixed + 4096);
        assert_eq!(held_bytes(&record, &message(shared()), true), fixed + 4096);
        // A body of its own: the value counts besides only while the record is kept.
        assert_eq!(held_bytes(&record, &message(own()), false), fixed + 4096);
        assert_eq!(held_bytes(&record, &message(own()), true), fixed + 2 * 4096);
    }
}
