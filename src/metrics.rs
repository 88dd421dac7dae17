//! Every metric the bridge exports, prefixed `kafka_sqs_bridge_`. Labels are bounded:
//! destination, topic, partition and reason, never a key or a record id.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const PREFIX: &str = "kafka_sqs_bridge";

/// Reasons a record can never be sent (see `message::Unsendable::as_label`).
pub const UNDELIVERABLE_REASONS: [&str; 4] = [
    "too_large",
    "missing_group_id",
    "missing_deduplication_id",
    "refused_by_sqs",
];
const RETRY_REASONS: [&str; 3] = ["transient", "destination", "request"];
const HEADER_DROP_REASONS: [&str; 6] = [
    "invalid_name",
    "reserved_name",
    "duplicate_name",
    "empty_value",
    "too_many",
    "message_too_large",
];
const REQUEST_OUTCOMES: [&str; 5] = ["ok", "partial", "transient", "destination", "request"];

/// The bridge's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub records_received: IntCounterVec,
    pub records_filtered: IntCounterVec,
    pub records_sent: IntCounterVec,
    pub records_retried: IntCounterVec,
    pub records_skipped: IntCounterVec,
    pub records_failed: IntCounterVec,
    pub records_dead_lettered: IntCounterVec,
    pub headers_dropped: IntCounterVec,
    pub ordering_faults: IntCounterVec,
    pub sqs_requests: IntCounterVec,
    pub sqs_throttled: IntCounterVec,
    pub sqs_request_duration: HistogramVec,
    pub batch_entries: HistogramVec,
    pub batch_bytes: HistogramVec,
    pub end_to_end_latency: HistogramVec,
    pub in_flight_batches: IntGaugeVec,
    pub in_flight_limit: IntGaugeVec,
    pub buffered_bytes: IntGaugeVec,
    pub paused_partitions: IntGaugeVec,
    pub backpressure_pauses: IntCounterVec,
    pub share_pauses: IntCounterVec,
    pub assigned_partitions: IntGaugeVec,
    pub rebalances: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    pub commit_failures: IntCounterVec,
    pub destination_failing: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub up: IntGauge,
}

/// The series a destination updates for every record or request, looked up once: finding a
/// series by its labels hashes them under a lock, which costs more than the update itself.
pub struct DestinationSeries {
    pub records_sent: IntCounter,
    pub end_to_end_latency: Histogram,
    pub batch_entries: Histogram,
    pub batch_bytes: Histogram,
    pub sqs_request_duration: Histogram,
}

impl Metrics {
    /// The process-wide metrics.
    pub fn global() -> Arc<Metrics> {
        static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();
        Arc::clone(GLOBAL.get_or_init(|| Arc::new(Metrics::new())))
    }

    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(format!("{PREFIX}_{name}"), help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(format!("{PREFIX}_{name}"), help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(format!("{PREFIX}_{name}"), help).buckets(buckets);
            let metric = HistogramVec::new(opts, labels).expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let d = &["destination"];
        let dr = &["destination", "reason"];
        let dtp = &["destination", "topic", "partition"];

        let up = IntGauge::new(format!("{PREFIX}_up"), "1 while the bridge runs")
            .expect("metric definitions are valid");
        registry
            .register(Box::new(up.clone()))
            .expect("metric names are unique");

        let metrics = Self {
            records_received: counter(
                "records_received_total",
                "Records read from Kafka",
                &["destination", "topic"],
            ),
            records_filtered: counter(
                "records_filtered_total",
                "Records the destination's filter did not select",
                d,
            ),
            records_sent: counter("records_sent_total", "Records acknowledged by SQS", d),
            records_retried: counter(
                "records_retried_total",
                "Entries sent again after a failure",
                dr,
            ),
            records_skipped: counter(
                "records_skipped_total",
                "Records not sent, by configuration or policy",
                dr,
            ),
            records_failed: counter("records_failed_total", "Records that can never be sent", dr),
            records_dead_lettered: counter(
                "records_dead_lettered_total",
                "Records produced to the dead-letter topic",
                dr,
            ),
            headers_dropped: counter(
                "headers_dropped_total",
                "Kafka headers left out of the message attributes",
                dr,
            ),
            ordering_faults: counter(
                "ordering_faults_total",
                "SQS accepted a later entry of a group after refusing an earlier one",
                d,
            ),
            sqs_requests: counter(
                "sqs_requests_total",
                "SendMessageBatch requests, by outcome",
                &["destination", "outcome"],
            ),
            sqs_throttled: counter(
                "sqs_throttled_requests_total",
                "Requests or entries SQS throttled",
                d,
            ),
            sqs_request_duration: histogram(
                "sqs_request_duration_seconds",
                "SendMessageBatch round trips",
                d,
                exponential(0.001, 2.0, 16),
            ),
            batch_entries: histogram(
                "batch_entries",
                "Entries per SendMessageBatch",
                d,
                (1..=10).map(f64::from).collect(),
            ),
            batch_bytes: histogram(
                "batch_bytes",
                "Bytes per SendMessageBatch",
                d,
                exponential(256.0, 4.0, 8),
            ),
            end_to_end_latency: histogram(
                "end_to_end_latency_seconds",
                "From the Kafka record timestamp to the SQS acknowledgement",
                d,
                latency_buckets(),
            ),
            in_flight_batches: gauge("in_flight_batches", "Batches sent and not yet settled", d),
            in_flight_limit: gauge(
                "in_flight_limit",
                "Batches that may be in flight: widened while full, halved on throttling",
                d,
            ),
            buffered_bytes: gauge(
                "buffered_bytes",
                "Bytes of records read and not yet settled",
                d,
            ),
            paused_partitions: gauge(
                "paused_partitions",
                "Partitions paused: all after a second over the budget, or each over its share",
                d,
            ),
            backpressure_pauses: counter(
                "backpressure_pauses_total",
                "Times the partitions were paused because the loop could not read for a second",
                d,
            ),
            share_pauses: counter(
                "share_pauses_total",
                "Times a partition was paused for holding more than its share of a full budget",
                d,
            ),
            assigned_partitions: gauge(
                "assigned_partitions",
                "Partitions assigned to this instance",
                d,
            ),
            rebalances: counter(
                "rebalances_total",
                "Partition assignment changes",
                &["destination", "kind"],
            ),
            consumer_lag: gauge(
                "consumer_lag_records",
                "Records between the committed offset and the end of the partition",
                dtp,
            ),
            committed_offset: gauge("committed_offset", "Last offset committed to Kafka", dtp),
            commit_failures: counter("commit_failures_total", "Offset commits Kafka refused", d),
            destination_failing: gauge(
                "destination_failing",
                "1 while the queue refuses requests as a whole",
                d,
            ),
            build_info: gauge("build_info", "The running version", &["version"]),
            up,
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Creates every series of a destination at zero, so that dashboards and alerts see a
    /// flat line rather than no data before the first event of a kind.
    pub fn init_destination(&self, destination: &str, topics: &[&str]) {
        let d = [destination];
        for topic in topics {
            self.records_received
                .with_label_values(&[destination, topic]);
        }
        for counter in [
            &self.records_filtered,
            &self.records_sent,
            &self.ordering_faults,
            &self.sqs_throttled,
            &self.commit_failures,
            &self.backpressure_pauses,
            &self.share_pauses,
        ] {
            counter.with_label_values(&d);
        }
        for gauge in [
            &self.in_flight_batches,
            &self.buffered_bytes,
            &self.paused_partitions,
            &self.assigned_partitions,
            &self.destination_failing,
        ] {
            gauge.with_label_values(&d);
        }
        for histogram in [
            &self.sqs_request_duration,
            &self.batch_entries,
            &self.batch_bytes,
            &self.end_to_end_latency,
        ] {
            histogram.with_label_values(&d);
        }
        for reason in UNDELIVERABLE_REASONS {
            for counter in [
                &self.records_failed,
                &self.records_skipped,
                &self.records_dead_lettered,
            ] {
                counter.with_label_values(&[destination, reason]);
            }
        }
        self.records_skipped
            .with_label_values(&[destination, "empty_value"]);
        for reason in RETRY_REASONS {
            self.records_retried
                .with_label_values(&[destination, reason]);
        }
        for reason in HEADER_DROP_REASONS {
            self.headers_dropped
                .with_label_values(&[destination, reason]);
        }
        for outcome in REQUEST_OUTCOMES {
            self.sqs_requests.with_label_values(&[destination, outcome]);
        }
        for kind in ["assign", "revoke", "error"] {
            self.rebalances.with_label_values(&[destination, kind]);
        }
    }

    /// The per-record and per-request series of `destination`.
    pub fn destination_series(&self, destination: &str) -> DestinationSeries {
        let d = [destination];
        DestinationSeries {
            records_sent: self.records_sent.with_label_values(&d),
            end_to_end_latency: self.end_to_end_latency.with_label_values(&d),
            batch_entries: self.batch_entries.with_label_values(&d),
            batch_bytes: self.batch_bytes.with_label_values(&d),
            sqs_request_duration: self.sqs_request_duration.with_label_values(&d),
        }
    }

    /// Records offsets handed to Kafka for commit.
    pub fn committed(
        &self,
        destination: &str,
        offsets: &[(crate::kafka::progress::PartitionKey, i64)],
    ) {
        for (key, offset) in offsets {
            let partition = key.partition.to_string();
            self.committed_offset
                .with_label_values(&[destination, &key.topic, &partition])
                .set(*offset);
        }
    }

    /// Drops the per-partition series of partitions this instance no longer owns.
    pub fn forget_partition(&self, destination: &str, topic: &str, partition: i32) {
        let partition = partition.to_string();
        let labels = [destination, topic, partition.as_str()];
        let _ = self.consumer_lag.remove_label_values(&labels);
        let _ = self.committed_offset.remove_label_values(&labels);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("the text encoder writes to memory");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("bucket parameters are valid")
}

/// Milliseconds to minutes: the latency of a healthy bridge and of one catching up. Finer
/// between 10 and 50 ms, where a healthy bridge's p99 lies, so that a p99 read from the
/// buckets is not a guess between 25 and 50 ms.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
}
