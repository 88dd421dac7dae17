//! The configuration as the operator writes it: serde structs that reject unknown keys, with
//! the defaults that apply when a key is left out. Values that can be checked on their own are
//! checked while deserializing (see [`super::values`]), so that the error names the key and
//! where it came from; rules that span several keys live in [`super::validate`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::security::{CredentialsConfig, KafkaProperties, KafkaSecurity};
use super::values::{BatchBytes, DestinationName, JsonPointer, MaxEntries, QueueUrl, TopicName};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// One or more customer queues.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub admin: AdminConfig,
}

/// Where the records come from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub bootstrap_servers: String,
    /// Each destination consumes in its own group, `<group_id>.<destination name>`, so that
    /// one customer's outage never holds back another's records.
    pub group_id: String,
    /// Topics read by destinations that do not list their own.
    #[serde(default)]
    pub topics: Vec<TopicName>,
    /// How often stored offsets are committed to Kafka.
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a revoked partition's in-flight batches may take before the revoke goes on.
    #[serde(default = "defaults::revoke_timeout_ms")]
    pub revoke_timeout_ms: u64,
    /// TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// librdkafka properties passed through as given (`fetch.max.bytes`, `client.rack`).
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// One customer queue and how records become its messages.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Names the destination in logs, metrics and its consumer group.
    pub name: DestinationName,
    /// The queue URL as the SQS console shows it; a `.fifo` suffix makes it a FIFO queue.
    pub queue_url: QueueUrl,
    /// Another SQS endpoint, such as LocalStack; the real AWS endpoint when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// A PEM file of certificate authorities trusted for this endpoint, besides the system's
    /// own: for a private endpoint whose certificate a company CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_file: Option<PathBuf>,
    /// The queue's region; read off an AWS queue URL when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Topics this destination reads; `kafka.topics` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<TopicName>>,
    /// Which records this destination takes; all of its topics' records when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterConfig>,
    #[serde(default)]
    pub message: MessageConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The AWS credentials that reach this queue.
    #[serde(default)]
    pub credentials: CredentialsConfig,
}

/// Where a string is read from a record.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// The Kafka key.
    Key,
    /// The value of the first header with this name.
    Header(String),
    /// A value inside the JSON payload, addressed by an RFC 6901 pointer.
    JsonPointer(JsonPointer),
}

/// Selects records by one value: a record is taken when the value equals one of `equals`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub source: ValueSource,
    pub equals: Vec<String>,
}

/// Where a FIFO message's `MessageGroupId` comes from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupIdSource {
    /// The Kafka key; a keyless record gets one group per partition.
    #[default]
    Key,
    /// One group per partition.
    Partition,
    Header(String),
    JsonPointer(JsonPointer),
}

/// Where a FIFO message's `MessageDeduplicationId` comes from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum DeduplicationIdSource {
    /// `topic:partition:offset`: stable across restarts, so a resent record is dropped by SQS.
    #[default]
    #[serde(rename = "topic-partition-offset")]
    TopicPartitionOffset,
    #[serde(rename = "key")]
    Key,
    #[serde(rename = "header")]
    Header(String),
    #[serde(rename = "json_pointer")]
    JsonPointer(JsonPointer),
    /// No id is sent: the queue must have content-based deduplication enabled.
    #[serde(rename = "content_based")]
    ContentBased,
}

/// How the message body is made from the record.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// The Kafka value as it is when SQS accepts it as text, base64 otherwise.
    #[default]
    Raw,
    /// A JSON object with the record's topic, partition, offset, key, timestamp, headers and
    /// value.
    Envelope,
}

/// What happens to a record with no value (a tombstone) or an empty one.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmptyValuePolicy {
    /// Counted as skipped, never sent: SQS refuses empty bodies.
    #[default]
    Skip,
    /// Sent in an envelope with a null value; needs `format = "envelope"`.
    Send,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageConfig {
    /// `key` for FIFO queues when left out; a standard queue gets a group id (for fair
    /// queues) only when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupIdSource>,
    /// FIFO queues only; `topic-partition-offset` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<DeduplicationIdSource>,
    #[serde(default)]
    pub format: BodyFormat,
    #[serde(default)]
    pub empty_values: EmptyValuePolicy,
    /// Copy Kafka headers into message attributes, as far as SQS's limits allow.
    #[serde(default = "defaults::yes")]
    pub headers_as_attributes: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Entries per `SendMessageBatch`, 1 to 10.
    #[serde(default)]
    pub max_entries: MaxEntries,
    /// Bodies and attributes of one request, up to 1 MiB.
    #[serde(default)]
    pub max_batch_bytes: BatchBytes,
    /// How long a batch that is not full waits for more records.
    #[serde(default = "defaults::linger_ms")]
    pub linger_ms: u64,
    /// The most batches in flight to this queue at once; never two that hold the same
    /// message group. The window starts at 16, widens while it holds batches back and halves
    /// when SQS throttles (see [`crate::sqs::in_flight_limit`]).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// At most one entry per message group in a batch, so that SQS can never accept a later
    /// record of a group after refusing an earlier one in the same request. Turning it off
    /// fills batches faster when groups are few, at that risk.
    #[serde(default = "defaults::yes")]
    pub strict_order: bool,
}

/// What is done with a record that can never be sent.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UndeliverablePolicy {
    /// Produced to `dead_letter_topic` with headers saying why.
    DeadLetter,
    /// Logged with its coordinates and counted, then committed past.
    #[default]
    Skip,
    /// The bridge stops with a message naming the record.
    Stop,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(default)]
    pub on_undeliverable: UndeliverablePolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<TopicName>,
    /// Bytes of records read but not yet acknowledged; the bridge stops reading above it.
    #[serde(default = "defaults::max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// One `SendMessageBatch` attempt, connection included.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First delay before resending what failed transiently; doubles up to `retry_max_ms`.
    #[serde(default = "defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// Cap of the delay while the queue itself refuses us (access denied, no such queue).
    #[serde(default = "defaults::destination_retry_max_ms")]
    pub destination_retry_max_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight batches may take after SIGTERM before the bridge gives up on them.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `kafka_sqs_bridge=debug,info`; `RUST_LOG` wins.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[serde(default = "defaults::admin_listen")]
    pub listen: String,
    /// `/readyz` fails once every request of a destination failed for this long.
    #[serde(default = "defaults::unready_after_failing_ms")]
    pub unready_after_failing_ms: u64,
}

impl Default for MessageConfig {
    fn default() -> Self {
        Self {
            group_id: None,
            deduplication_id: None,
            format: BodyFormat::default(),
            empty_values: EmptyValuePolicy::default(),
            headers_as_attributes: true,
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_entries: MaxEntries::default(),
            max_batch_bytes: BatchBytes::default(),
            linger_ms: defaults::linger_ms(),
            max_in_flight: defaults::max_in_flight(),
            strict_order: true,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            on_undeliverable: UndeliverablePolicy::default(),
            dead_letter_topic: None,
            max_buffered_bytes: defaults::max_buffered_bytes(),
            request_timeout_ms: defaults::request_timeout_ms(),
            retry_initial_ms: defaults::retry_initial_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            destination_retry_max_ms: defaults::destination_retry_max_ms(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: defaults::drain_timeout_ms(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: defaults::log_level(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: defaults::admin_listen(),
            unready_after_failing_ms: defaults::unready_after_failing_ms(),
        }
    }
}

impl DestinationConfig {
    /// The topics this destination reads, given the Kafka section's default list.
    pub fn topics<'a>(&'a self, kafka: &'a KafkaConfig) -> &'a [TopicName] {
        self.topics.as_deref().unwrap_or(&kafka.topics)
    }

    /// The queue's region: as configured, or read off an AWS queue URL.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref().or_else(|| self.queue_url.region())
    }
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn commit_interval_ms() -> u64 {
        1_000
    }
    pub fn revoke_timeout_ms() -> u64 {
        10_000
    }
    pub fn linger_ms() -> u64 {
        20
    }
    /// With 1,000 message groups, a 20 ms round trip took about 100 batches in flight.
    pub fn max_in_flight() -> usize {
        128
    }
    /// Enough records of enough message groups to fill batches during a backlog drain
    /// (9.79 - 9.91 entries a batch with 1,000 keys), within 87 - 101 MiB of resident
    /// memory; 8 MiB filled 9.64 - 9.67.
    pub fn max_buffered_bytes() -> usize {
        16 * 1024 * 1024
    }
    pub fn request_timeout_ms() -> u64 {
        10_000
    }
    pub fn retry_initial_ms() -> u64 {
        100
    }
    pub fn retry_max_ms() -> u64 {
        20_000
    }
    pub fn destination_retry_max_ms() -> u64 {
        300_000
    }
    pub fn drain_timeout_ms() -> u64 {
        20_000
    }
    pub fn log_level() -> String {
        "info".to_owned()
    }
    pub fn unready_after_failing_ms() -> u64 {
        60_000
    }
    pub fn admin_listen() -> String {
        "127.0.0.1:9464".to_owned()
    }
}
