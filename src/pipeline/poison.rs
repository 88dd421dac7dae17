//! Records that can never be sent to a destination: too large, missing the value their
//! group or deduplication id comes from, or refused by SQS for their content. The
//! destination's policy decides: produce them to a dead-letter topic (and count them as
//! handled only once Kafka acknowledged that), skip them with a log line and a count, or stop
//! the bridge with a message naming the record.

use std::time::Duration;

use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::{error, warn};

use crate::config::{KafkaConfig, UndeliverablePolicy};
use crate::kafka::consumer::{CONSUMER_ONLY_PROPERTIES, client_config};
use crate::message::Unsendable;
use crate::metrics::Metrics;
use crate::record::Record;
use crate::sqs::retry::Backoff;
use std::sync::Arc;

/// Headers a dead-lettered record carries, beside its own.
pub mod headers {
    pub const REASON: &str = "bridge.dead-letter.reason";
    pub const ERROR: &str = "bridge.dead-letter.error";
    pub const DESTINATION: &str = "bridge.dead-letter.destination";
    pub const TOPIC: &str = "bridge.source.topic";
    pub const PARTITION: &str = "bridge.source.partition";
    pub const OFFSET: &str = "bridge.source.offset";
    pub const TIMESTAMP: &str = "bridge.source.timestamp";
}

/// The bridge must stop: the policy is `stop` and a record cannot be sent.
#[derive(Debug, Clone)]
pub struct Halt(pub String);

/// Applies one destination's policy.
pub struct PoisonHandler {
    destination: String,
    policy: Policy,
    metrics: Arc<Metrics>,
}

enum Policy {
    Skip,
    Stop,
    DeadLetter {
        producer: FutureProducer,
        topic: String,
    },
}

impl PoisonHandler {
    pub fn new(
        destination: &str,
        policy: UndeliverablePolicy,
        dead_letter_topic: Option<&str>,
        kafka: &KafkaConfig,
        metrics: Arc<Metrics>,
    ) -> rdkafka::error::KafkaResult<Self> {
        let policy = match (policy, dead_letter_topic) {
            (UndeliverablePolicy::Skip, _) => Policy::Skip,
            (UndeliverablePolicy::Stop, _) => Policy::Stop,
            (UndeliverablePolicy::DeadLetter, topic) => {
                let mut config = client_config(kafka, "unused");
                for name in CONSUMER_ONLY_PROPERTIES {
                    config.remove(name);
                }
                config.set("enable.idempotence", "true").set("acks", "all");
                let topic = topic
                    .expect("validated: dead_letter needs a topic")
                    .to_owned();
                Policy::DeadLetter {
                    producer: config.create()?,
                    topic,
                }
            }
        };
        Ok(Self {
            destination: destination.to_owned(),
            policy,
            metrics,
        })
    }

    /// Whether the handler needs the whole record, not just its coordinates.
    pub fn needs_record(&self) -> bool {
        matches!(self.policy, Policy::DeadLetter { .. })
    }

    /// Handles one record; `Ok` once it is settled, `Err` when the bridge must stop.
    pub async fn handle(
        &self,
        coordinates: &str,
        record: Option<&Record>,
        problem: &Unsendable,
    ) -> Result<(), Halt> {
        let reason = problem.as_label();
        let destination = self.destination.as_str();
        self.metrics
            .records_failed
            .with_label_values(&[destination, reason])
            .inc();
        match &self.policy {
            Policy::Skip => {
                error!(destination, record = coordinates, reason, error = %problem, "record skipped: it cannot be sent");
                self.metrics
                    .records_skipped
                    .with_label_values(&[destination, reason])
                    .inc();
                Ok(())
            }
            Policy::Stop => {
                error!(destination, record = coordinates, reason, error = %problem, "stopping: record cannot be sent");
                Err(Halt(format!("record {coordinates}: {problem}")))
            }
            Policy::DeadLetter { producer, topic } => {
                let record = record.expect("records are kept when dead-lettering");
                self.dead_letter(producer, topic, record, problem).await;
                warn!(destination, record = coordinates, reason, dead_letter_topic = %topic, "record dead-lettered");
                self.metrics
                    .records_dead_lettered
                    .with_label_values(&[destination, reason])
                    .inc();
                Ok(())
            }
        }
    }

    /// Produces `record` to the dead-letter topic, retrying until Kafka acknowledges it: the
    /// record is only settled once it is safe there.
    async fn dead_letter(
        &self,
        producer: &FutureProducer,
        topic: &str,
        record: &Record,
        problem: &Unsendable,
    ) {
        let backoff = Backoff {
            initial: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        };
        let mut failures = 0;
        loop {
            let headers = dead_letter_headers(&self.destination, record, problem);
            let mut message = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
            if let Some(key) = record.key.as_deref() {
                message = message.key(key);
            }
            if let Some(value) = record.value.as_deref() {
                message = message.payload(value);
            }
            if let Some(timestamp) = record.timestamp_ms {
                message = message.timestamp(timestamp);
            }
            match producer.send(message, Duration::from_secs(30)).await {
                Ok(_) => return,
                Err((error, _)) => {
                    failures += 1;
                    warn!(destination = %self.destination, %error, attempt = failures, "dead-letter produce failed; retrying");
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
    }
}

fn dead_letter_headers(destination: &str, record: &Record, problem: &Unsendable) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 7);
    for header in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &header.name,
            value: header.value.as_deref(),
        });
    }
    let text = |headers: OwnedHeaders, key: &str, value: &str| {
        headers.insert(KafkaHeader {
            key,
            value: Some(value.as_bytes()),
        })
    };
    headers = text(headers, headers::REASON, problem.as_label());
    headers = text(headers, headers::ERROR, &problem.to_string());
    headers = text(headers, headers::DESTINATION, destination);
    headers = text(headers, headers::TOPIC, &record.topic);
    headers = text(headers, headers::PARTITION, &record.partition.to_string());
    headers = text(headers, headers::OFFSET, &record.offset.to_string());
    if let Some(timestamp) = record.timestamp_ms {
        headers = text(headers, headers::TIMESTAMP, &timestamp.to_string());
    }
    headers
}
