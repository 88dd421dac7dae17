//! The consumer of one destination: its librdkafka settings, the rebalance callbacks that keep
//! [`Progress`] in step with the assignment, and the conversion of a fetched message into a
//! [`Record`].
//!
//! Offsets are never stored or committed by librdkafka on its own: the bridge commits the
//! watermark of each owned partition itself, periodically, and for revoked partitions before
//! the revoke completes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::progress::{PartitionKey, Progress};
use crate::admin::DestinationHealth;
use crate::config::KafkaConfig;
use crate::config::security::KafkaSecurity;
use crate::metrics::Metrics;
use crate::record::{Header, Record};

/// The consumer type the pipeline uses.
pub type BridgeConsumer = StreamConsumer<BridgeContext>;

/// Callbacks of one destination's consumer.
pub struct BridgeContext {
    destination: String,
    progress: Arc<Progress>,
    revoke_timeout: Duration,
    metrics: Arc<Metrics>,
    health: Arc<DestinationHealth>,
}

/// Creates a consumer in the group `group_id`, subscribed to `topics`.
pub fn create_consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    topics: &[&str],
    destination: &str,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    health: Arc<DestinationHealth>,
) -> KafkaResult<BridgeConsumer> {
    let context = BridgeContext {
        destination: destination.to_owned(),
        progress,
        revoke_timeout: Duration::from_millis(kafka.revoke_timeout_ms),
        metrics,
        health,
    };
    let consumer: BridgeConsumer = client_config(kafka, group_id).create_with_context(context)?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// librdkafka settings: the bridge's own first, then the operator's pass-through properties.
pub fn client_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "client.id",
            format!("kafka-sqs-bridge-{}", env!("CARGO_PKG_VERSION")),
        )
        // Statistics carry each partition's lag, for the lag metric.
        .set("statistics.interval.ms", "5000")
        // librdkafka prefetches on its own, outside the bridge's byte budget. Its defaults
        // (64 MiB queued, 50 MiB per fetch) held over 300 MiB while a backlog drained. The
        // limits count compressed bytes, and each partition's fetch is decompressed whole:
        // 1 MiB per partition of well-compressed records held ~40 MiB. 64 KiB per partition
        // held ~10 MiB and interleaves the partitions, so more message groups are ready.
        // A partition over the queue limit waits `fetch.queue.backoff.ms` (1 s by default)
        // before its next fetch, which starved the bridge with fetches that small.
        .set("queued.max.messages.kbytes", "1024")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536")
        .set("fetch.queue.backoff.ms", "10");
    let consumer_protocol = kafka
        .properties
        .get("group.protocol")
        .is_some_and(|p| p == "consumer");
    if !consumer_protocol {
        // Incremental rebalances: a new instance takes partitions without stopping the others.
        config.set("partition.assignment.strategy", "cooperative-sticky");
    }
    apply_security(&mut config, &kafka.security);
    for (name, value) in kafka.properties.iter() {
        config.set(name, value);
    }
    config
}

/// The properties librdkafka reads only in a consumer (the C column of its
/// CONFIGURATION.md, version 2.12). A producer built from the consumer's settings leaves
/// them out: librdkafka would warn about each at every start.
pub const CONSUMER_ONLY_PROPERTIES: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.commit.enable",
    "auto.offset.reset",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "consume.callback.max.messages",
];

/// A Kafka error as text that cannot leak a secret: librdkafka's own text for a refused
/// property ends with the property's value, which may be a password.
pub fn describe_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, name, _value) => {
            format!("librdkafka refused the property {name:?}: {description}")
        }
        other => other.to_string(),
    }
}

/// TLS and SASL settings, with the secrets read at load time.
fn apply_security(config: &mut ClientConfig, security: &KafkaSecurity) {
    config.set("security.protocol", security.protocol.librdkafka_name());
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    if let Some(file) = &security.ca_file {
        config.set("ssl.ca.location", path(file));
    }
    if let Some(file) = &security.certificate_file {
        config.set("ssl.certificate.location", path(file));
    }
    if let Some(file) = &security.key_file {
        config.set("ssl.key.location", path(file));
    }
    if let Some(password) = &security.resolved.key_password {
        config.set("ssl.key.password", password.expose());
    }
    if security.protocol.uses_sasl() {
        if let Some(mechanism) = security.sasl_mechanism {
            config.set("sasl.mechanisms", mechanism.librdkafka_name());
        }
        if let Some(user) = &security.sasl_username {
            config.set("sasl.username", user);
        }
        if let Some(password) = &security.resolved.sasl_password {
            config.set("sasl.password", password.expose());
        }
        if let Some(oidc) = &security.oidc {
            config.set("sasl.oauthbearer.method", "oidc");
            config.set(
                "sasl.oauthbearer.token.endpoint.url",
                &oidc.token_endpoint_url,
            );
            config.set("sasl.oauthbearer.client.id", &oidc.client_id);
            if let Some(secret) = &security.resolved.oidc_client_secret {
                config.set("sasl.oauthbearer.client.secret", secret.expose());
            }
            if let Some(scope) = &oidc.scope {
                config.set("sasl.oauthbearer.scope", scope);
            }
        }
    }
}

impl ClientContext for BridgeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let destination = self.destination.as_str();
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                error!(destination, facility = fac, "librdkafka: {log_message}")
            }
            L::Warning => warn!(destination, facility = fac, "librdkafka: {log_message}"),
            L::Notice | L::Info => info!(destination, facility = fac, "librdkafka: {log_message}"),
            L::Debug => debug!(destination, facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(destination = %self.destination, %error, "Kafka client error: {reason}");
    }

    /// Sets each owned partition's lag from librdkafka's statistics. Only the few fields
    /// needed are read: the full statistics type does not parse every librdkafka version.
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            debug!(destination = %self.destination, "librdkafka statistics are not JSON");
            return;
        };
        let Some(topics) = stats["topics"].as_object() else {
            return;
        };
        for (topic, topic_stats) in topics {
            let Some(partitions) = topic_stats["partitions"].as_object() else {
                continue;
            };
            for (partition, p) in partitions {
                // -1 is librdkafka's internal unassigned partition; a negative lag is unknown.
                let owned = p["desired"].as_bool() == Some(true);
                let lag = p["consumer_lag"].as_i64().filter(|lag| *lag >= 0);
                let (Some(lag), true, false) = (lag, owned, partition.starts_with('-')) else {
                    continue;
                };
                self.metrics
                    .consumer_lag
                    .with_label_values(&[self.destination.as_str(), topic, partition])
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for BridgeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = keys(tpl);
                info!(destination = %self.destination, partitions = %describe(&partitions), "partitions assigned");
                self.progress.assign(partitions);
                self.health.set_joined();
                self.count_rebalance("assign");
            }
            Rebalance::Revoke(tpl) => {
                let partitions = keys(tpl);
                self.count_rebalance("revoke");
                if consumer.assignment_lost() {
                    warn!(
                        destination = %self.destination,
                        partitions = %describe(&partitions),
                        "partitions lost; their unacknowledged records will be read again by the new owner"
                    );
                    self.progress.abandon(&partitions);
                    for key in &partitions {
                        self.metrics
                            .forget_partition(&self.destination, &key.topic, key.partition);
                    }
                    return;
                }
                self.finish_revoked(consumer, &partitions);
            }
            Rebalance::Error(error) => {
                warn!(destination = %self.destination, %error, "rebalance failed");
                self.count_rebalance("error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        let assigned = consumer
            .assignment()
            .map(|tpl| tpl.count())
            .unwrap_or_default();
        self.metrics
            .assigned_partitions
            .with_label_values(&[&self.destination])
            .set(i64::try_from(assigned).unwrap_or(i64::MAX));
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                self.progress.commit_failed(&committed_offsets(offsets));
                warn!(destination = %self.destination, %error, "offset commit failed; it is retried with the next one");
                self.metrics
                    .commit_failures
                    .with_label_values(&[&self.destination])
                    .inc();
            }
        }
    }
}

impl BridgeContext {
    /// Lets the in-flight batches of revoked partitions finish, then commits their offsets,
    /// before librdkafka hands the partitions to another member.
    fn finish_revoked(&self, consumer: &BaseConsumer<Self>, partitions: &[PartitionKey]) {
        // The callback runs inside the consumer loop's poll; the senders run on other worker
        // threads, so this thread may block for them. A current-thread runtime cannot, and
        // neither can the thread that closes the consumer at the end of a stop, outside any
        // runtime (nothing is left in flight by then).
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let idle = if multi_thread {
            tokio::task::block_in_place(|| {
                self.progress
                    .wait_until_idle(partitions, self.revoke_timeout)
            })
        } else {
            self.progress.wait_until_idle(partitions, Duration::ZERO)
        };
        if !idle {
            warn!(
                destination = %self.destination,
                timeout_ms = self.revoke_timeout.as_millis() as u64,
                "revoked partitions still had batches in flight; those records may be sent again by the new owner"
            );
        }
        let finals = self.progress.revoke(partitions);
        for key in partitions {
            self.metrics
                .forget_partition(&self.destination, &key.topic, key.partition);
        }
        info!(destination = %self.destination, partitions = %describe(partitions), "partitions revoked");
        if finals.is_empty() {
            return;
        }
        match consumer.commit(&offsets_list(&finals), CommitMode::Sync) {
            Ok(()) => self.metrics.committed(&self.destination, &finals),
            Err(error) => {
                warn!(destination = %self.destination, %error, "commit of revoked partitions failed");
                self.metrics
                    .commit_failures
                    .with_label_values(&[&self.destination])
                    .inc();
            }
        }
    }

    fn count_rebalance(&self, kind: &str) {
        self.metrics
            .rebalances
            .with_label_values(&[&self.destination, kind])
            .inc();
    }
}

/// A topic partition list holding the offsets to commit.
pub fn offsets_list(offsets: &[(PartitionKey, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (key, offset) in offsets {
        tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(*offset))
            .expect("an explicit offset is always valid");
    }
    tpl
}

/// The explicit offsets of a topic partition list, as [`offsets_list`] built it.
fn committed_offsets(tpl: &TopicPartitionList) -> Vec<(PartitionKey, i64)> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((partition_key(e), offset)),
            _ => None,
        })
        .collect()
}

/// True for a commit that the group coordinator refused because the group is changing
/// (a rebalance under way, a generation, member epoch or member it no longer knows, the
/// coordinator moving): it can land once the rebalance is over or the coordinator is found
/// again. The epochs are KIP-848's (`group.protocol = consumer`) form of the generation.
pub fn is_rebalance_refusal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error,
        KafkaError::ConsumerCommit(
            Code::RebalanceInProgress
                | Code::IllegalGeneration
                | Code::StaleMemberEpoch
                | Code::FencedMemberEpoch
                | Code::UnknownMemberId
                | Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::CoordinatorNotAvailable
        )
    )
}

/// The topic and partition of one element of a topic partition list.
pub fn partition_key(element: &TopicPartitionListElem<'_>) -> PartitionKey {
    PartitionKey {
        topic: Arc::from(element.topic()),
        partition: element.partition(),
    }
}

fn keys(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements().iter().map(partition_key).collect()
}

fn describe(partitions: &[PartitionKey]) -> String {
    let mut names: Vec<String> = partitions
        .iter()
        .map(|k| format!("{}/{}", k.topic, k.partition))
        .collect();
    names.sort();
    names.join(",")
}

/// Interns topic names, so that records share one allocation per topic.
#[derive(Default)]
pub struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|t| &***t == name) {
            return Arc::clone(known);
        }
        let topic: Arc<str> = Arc::from(name);
        self.0.push(Arc::clone(&topic));
        topic
    }
}

/// The bridge's copy of a fetched message.
pub fn to_record(message: &BorrowedMessage<'_>, topics: &mut TopicNames) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: topics.get(message.topic()),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_a_changing_group_are_told_from_other_commit_failures() {
        let refused = KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration);
        assert!(is_rebalance_refusal(&refused));
        let rebalancing = KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress);
        assert!(is_rebalance_refusal(&rebalancing));
        let stale_epoch = KafkaError::ConsumerCommit(RDKafkaErrorCode::StaleMemberEpoch);
        assert!(is_rebalance_refusal(&stale_epoch), "KIP-848's generation");

        let broker_gone = KafkaError::ConsumerCommit(RDKafkaErrorCode::AllBrokersDown);
        assert!(!is_rebalance_refusal(&broker_gone));
        let not_allowed = KafkaError::ConsumerCommit(RDKafkaErrorCode::GroupAuthorizationFailed);
        assert!(!is_rebalance_refusal(&not_allowed));
        // librdkafka already waited for the coordinator as long as it would.
        let no_coordinator = KafkaError::ConsumerCommit(RDKafkaErrorCode::WaitingForCoordinator);
        assert!(!is_rebalance_refusal(&no_coordinator));
    }

    #[test]
    fn committed_offsets_reads_back_what_offsets_list_built() {
        let key = |partition| PartitionKey {
            topic: Arc::from("records"),
            partition,
        };
        let offsets = vec![(key(0), 7), (key(3), 42)];
        assert_eq!(committed_offsets(&offsets_list(&offsets)), offsets);
    }
}
