//! Delivery under faults: the release binary against the real broker and the in-process
//! fault-injecting SQS stub, which throttles, fails requests and entries, drops connections
//! and refuses queues on demand.
//!
//! Run with `--test-threads=1`, as `scripts/test` does: one test stops the shared broker,
//! which would stall whatever runs beside it.

#![cfg(feature = "e2e-tests")]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafka_sqs_bridge::stub::{Faults, SqsStub};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// A stub destination that retries quickly, so that faults are worked through in seconds.
fn fast_retry_destination(name: &str, stub: &SqsStub, queue: &str, extra: &str) -> String {
    let retries = "[destinations.delivery]
retry_initial_ms = 20
retry_max_ms = 500
destination_retry_max_ms = 1000
";
    stub_destination(name, stub, queue, &format!("{retries}{extra}"))
}

/// Waits until `queue` holds `count` messages.
async fn wait_for_depth(
    stub: &SqsStub,
    queue: &str,
    count: usize,
    timeout: Duration,
    bridge: &Bridge,
) {
    let deadline = Instant::now() + timeout;
    while stub.depth(queue) < count {
        assert!(
            Instant::now() < deadline,
            "{queue}: {} of {count} messages; log: {}",
            stub.depth(queue),
            bridge.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seq_of(m: &kafka_sqs_bridge::stub::StoredMessage) -> u64 {
    parse_sample(&m.body).seq
}

/// Checks that `queue` holds each of `count` records once, in order per message group, and
/// returns how many groups it holds.
fn assert_each_once_in_order(stub: &SqsStub, queue: &str, count: usize) -> usize {
    let messages = stub.messages(queue);
    let ids: HashSet<String> = messages.iter().map(|m| parse_sample(&m.body).id).collect();
    assert_eq!(ids.len(), count, "{queue}: records lost");
    assert_eq!(messages.len(), count, "{queue}: duplicates");
    assert_stub_ordered(&messages, seq_of)
}

/// A bridge that has drained `records` of `devices` sensors, from a fresh 4-partition topic
/// into the FIFO queue `q.fifo` of a stub with `faults`, committed them, and put each once
/// and in order per device in the queue.
struct Drained {
    stub: SqsStub,
    bridge: Bridge,
    /// The bridge's admin port, for its metrics.
    port: u16,
}

async fn drain_into_stub(
    name: &str,
    faults: Faults,
    records: usize,
    devices: usize,
    extra: &str,
) -> Drained {
    let services = Services::from_env();
    let topic = unique(name);
    create_topic(&services, &topic, 4).await;
    let stub = SqsStub::start("127.0.0.1:0", faults).await.unwrap();
    produce(
        &producer(&services),
        &topic,
        &sensor_records(records, devices, 2),
    )
    .await;
    let group = unique(name);
    let port = free_port();
    let config = base_config_on(&services, &group, &topic, port)
        + &fast_retry_destination("fifo", &stub, "q.fifo", extra);
    let bridge = Bridge::start(&config, name);
    wait_for_depth(&stub, "q.fifo", records, 2 * MINUTE, &bridge).await;
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 4, MINUTE);
    assert_eq!(assert_each_once_in_order(&stub, "q.fifo", records), devices);
    Drained { stub, bridge, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_errors_resets_and_failed_entries_lose_and_reorder_nothing() {
    let services = Services::from_env();
    let topic = unique("faults");
    create_topic(&services, &topic, 4).await;
    let faults = Faults {
        throttle_rate: 0.1,
        fail_rate: 0.05,
        reset_rate: 0.03,
        lose_reply_rate: 0.05,
        entry_fail_rate: 0.15,
        ..Faults::default()
    };
    let stub = SqsStub::start("127.0.0.1:0", faults).await.unwrap();
    let records = sensor_records(5_000, 60, 3);
    produce(&producer(&services), &topic, &records).await;

    let group = unique("faults");
    let port = free_port();
    let config = base_config_on(&services, &group, &topic, port)
        + &fast_retry_destination("fifo", &stub, "q.fifo", "");
    let mut bridge = Bridge::start(&config, "faults_random");
    wait_for_depth(&stub, "q.fifo", 5_000, 3 * MINUTE, &bridge).await;
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 4, MINUTE);

    assert_eq!(assert_each_once_in_order(&stub, "q.fifo", 5_000), 60);

    let stats = stub.stats();
    assert!(
        stats.failed_entries > 100 && stats.refused_requests > 20,
        "faults were not injected: {stats:?}"
    );
    assert!(
        stats.deduplicated > 0,
        "no lost reply made the bridge resend what SQS took: {stats:?}"
    );
    let scrape = http_get(port, "/metrics").expect("metrics").1;
    assert!(
        metric(
            &scrape,
            "kafka_sqs_bridge_records_retried_total",
            &[("destination", "fifo")]
        ) > 0.0
    );
    assert_eq!(
        metric(&scrape, "kafka_sqs_bridge_ordering_faults_total", &[]),
        0.0
    );
    assert_eq!(
        metric(
            &scrape,
            "kafka_sqs_bridge_records_sent_total",
            &[("destination", "fifo")]
        ),
        5_000.0
    );
    eprintln!("stub saw {stats:?}");

    bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_queue_holds_back_only_its_own_destination_and_catches_up() {
    let services = Services::from_env();
    let topic = unique("isolation");
    create_topic(&services, &topic, 4).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let group = unique("isolation");
    let port = free_port();
    let config = base_config_on(&services, &group, &topic, port)
        + &fast_retry_destination("healthy", &stub, "healthy.fifo", "")
        + &fast_retry_destination("failing", &stub, "failing.fifo", "");
    let mut bridge = Bridge::start(&config, "isolation");

    // Records flow at a steady rate; half way through, the failing queue starts refusing.
    let producer = producer(&services);
    let records = sensor_records(3_000, 50, 2);
    let mut produced = 0;
    let mut refused_from = None;
    for (round, chunk) in records.chunks(100).enumerate() {
        if round == 5 {
            stub.update_faults(|f| f.missing_queues_containing = Some("failing".into()));
            refused_from = Some(stub.depth("healthy.fifo"));
        }
        produce(&producer, &topic, &stamped(chunk)).await;
        produced += chunk.len();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_depth(&stub, "healthy.fifo", produced, MINUTE, &bridge).await;
    let failing_during_outage = stub.depth("failing.fifo");

    let split = refused_from.unwrap();
    let scrape = http_get(port, "/metrics").expect("metrics").1;
    assert_eq!(
        metric(
            &scrape,
            "kafka_sqs_bridge_destination_failing",
            &[("destination", "failing")]
        ),
        1.0
    );
    let (status, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(
        status, 503,
        "a refusing queue makes the bridge unready: {body}"
    );
    assert!(
        failing_during_outage <= split + 100,
        "the failing queue kept taking messages"
    );

    // The healthy queue's latency, from produce to acceptance, before and during the outage.
    let healthy = stub.messages("healthy.fifo");
    let before = latency_p99(&healthy[..split]);
    let during = latency_p99(&healthy[split..]);
    eprintln!(
        "healthy destination p99: {before:?} before the other's outage, {during:?} during it"
    );
    assert!(
        during < before.max(Duration::from_millis(200)) * 3,
        "the healthy destination slowed down during the other's outage: p99 {during:?} against {before:?}"
    );

    stub.update_faults(|f| f.missing_queues_containing = None);
    wait_for_depth(&stub, "failing.fifo", produced, MINUTE, &bridge).await;
    for name in ["healthy", "failing"] {
        wait_for_commits(&services, &format!("{group}.{name}"), &topic, 4, MINUTE);
        let messages = stub.messages(&format!("{name}.fifo"));
        assert_eq!(messages.len(), produced, "{name}");
        assert_stub_ordered(&messages, seq_of);
    }
    bridge.stop_cleanly();
}

/// Records with the time they are produced in their value, `produced_at_ms`.
fn stamped(records: &[TestRecord]) -> Vec<TestRecord> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    records
        .iter()
        .map(|r| {
            let mut value: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            value["produced_at_ms"] = now.into();
            TestRecord {
                value: serde_json::to_vec(&value).unwrap(),
                ..r.clone()
            }
        })
        .collect()
}

/// The 99th percentile of acceptance time minus `produced_at_ms`.
fn latency_p99(messages: &[kafka_sqs_bridge::stub::StoredMessage]) -> Duration {
    let mut latencies: Vec<u64> = messages
        .iter()
        .map(|m| {
            let value: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            m.accepted_at_ms
                .saturating_sub(value["produced_at_ms"].as_u64().unwrap_or(m.accepted_at_ms))
        })
        .collect();
    latencies.sort_unstable();
    let index = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    Duration::from_millis(latencies.get(index).copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_records_are_dead_lettered_with_their_reason() {
    let services = Services::from_env();
    let topic = unique("poison");
    let dead_letters = unique("poison-dlq");
    create_topic(&services, &topic, 2).await;
    create_topic(&services, &dead_letters, 1).await;
    let stub = SqsStub::start(
        "127.0.0.1:0",
        Faults {
            refuse_bodies_containing: Some("REFUSE-ME".into()),
            ..Faults::default()
        },
    )
    .await
    .unwrap();

    let good = |i: usize| TestRecord {
        key: Some(format!("dev-{}", i % 5).into_bytes()),
        value: format!("{{\"id\":\"good-{i}\",\"n\":{i}}}").into_bytes(),
        headers: vec![],
        partition: Some((i % 2) as i32),
    };
    let mut records: Vec<TestRecord> = (0..40).map(good).collect();
    let poison = [
        (
            "too_large",
            format!("{{\"id\":\"big\",\"pad\":\"{}\"}}", "x".repeat(70_000)),
        ),
        ("missing_deduplication_id", "{\"no_id\":true}".to_owned()),
        (
            "refused_by_sqs",
            "{\"id\":\"bad\",\"text\":\"REFUSE-ME\"}".to_owned(),
        ),
    ];
    for (i, (_, value)) in poison.iter().enumerate() {
        records.insert(
            10 + i * 10,
            TestRecord {
                key: Some(b"dev-1".to_vec()),
                value: value.clone().into_bytes(),
                headers: vec![("trace".into(), b"t-1".to_vec())],
                partition: Some(1),
            },
        );
    }
    let coordinates = produce(&producer(&services), &topic, &records).await;

    let group = unique("poison");
    let extra = format!(
        "on_undeliverable = \"dead_letter\"\ndead_letter_topic = \"{dead_letters}\"\n\
         [destinations.message]\ndeduplication_id = {{ json_pointer = \"/id\" }}\n\
         [destinations.batch]\nmax_batch_bytes = 65536\n"
    );
    let config = base_config(&services, &group, &topic)
        + &fast_retry_destination("fifo", &stub, "q.fifo", &extra);
    let mut bridge = Bridge::start(&config, "poison_dead_letter");
    wait_for_depth(&stub, "q.fifo", 40, MINUTE, &bridge).await;
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 2, MINUTE);

    let dead = consume_topic(&services, &dead_letters, 3, MINUTE);
    assert_eq!(dead.len(), 3, "dead letters: {dead:?}");
    for (i, (reason, value)) in poison.iter().enumerate() {
        let letter = dead
            .iter()
            .find(|d| {
                d.headers
                    .get("bridge.dead-letter.reason")
                    .map(String::as_str)
                    == Some(*reason)
            })
            .unwrap_or_else(|| panic!("no dead letter for {reason}: {dead:?}"));
        let (partition, offset) = coordinates[10 + i * 10];
        assert_eq!(letter.value.as_deref(), Some(value.as_bytes()));
        assert_eq!(letter.headers["bridge.source.topic"], topic);
        assert_eq!(
            letter.headers["bridge.source.partition"],
            partition.to_string()
        );
        assert_eq!(letter.headers["bridge.source.offset"], offset.to_string());
        assert_eq!(letter.headers["bridge.dead-letter.destination"], "fifo");
        assert_eq!(
            letter.headers["trace"], "t-1",
            "the record's own headers are kept"
        );
        assert!(!letter.headers["bridge.dead-letter.error"].is_empty());
    }
    assert_eq!(stub.messages("q.fifo").len(), 40);
    bridge.stop_cleanly();
    // The consumer's settings, the test's session timeout among them, stay off the producer.
    let log = bridge.log_text();
    assert!(
        !log.contains("consumer property"),
        "the dead-letter producer was given consumer settings: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_policy_halts_naming_the_record() {
    let services = Services::from_env();
    let topic = unique("stop");
    create_topic(&services, &topic, 1).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let records = vec![
        TestRecord {
            key: Some(b"k".to_vec()),
            value: b"{\"id\":\"a\"}".to_vec(),
            headers: vec![],
            partition: Some(0),
        },
        TestRecord {
            key: Some(b"k".to_vec()),
            value: b"{\"nope\":1}".to_vec(),
            headers: vec![],
            partition: Some(0),
        },
    ];
    produce(&producer(&services), &topic, &records).await;
    let group = unique("stop");
    let extra = "on_undeliverable = \"stop\"\n[destinations.message]\ndeduplication_id = { json_pointer = \"/id\" }\n";
    let config = base_config(&services, &group, &topic)
        + &fast_retry_destination("fifo", &stub, "q.fifo", extra);
    let mut bridge = Bridge::start(&config, "poison_stop");
    let status = bridge.wait(MINUTE).expect("the bridge stops by itself");
    assert_eq!(status.code(), Some(1));
    let log = bridge.log_text();
    assert!(
        log.contains(&format!("{topic}/0@1")),
        "the log names the record: {log}"
    );
    let committed = committed_offsets(&services, &format!("{group}.fifo"), &topic, 1);
    assert!(
        committed[&0] <= 1,
        "the halting record must not be committed past: {committed:?}"
    );
}

/// Over the byte budget the bridge stops reading and does not pause while SQS keeps up; when
/// SQS is so slow that the loop cannot read for a second, it pauses the partitions, and it
/// resumes them once SQS catches up. The buffer stays near the budget throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_stops_reading_pauses_only_a_stalled_destination_and_delivers_everything() {
    const BUDGET: f64 = 131_072.0;
    let services = Services::from_env();
    let topic = unique("pressure");
    create_topic(&services, &topic, 4).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let records = producer(&services);
    produce(&records, &topic, &sensor_records(3_000, 20, 2)).await;
    let group = unique("pressure");
    let port = free_port();
    let extra = "max_buffered_bytes = 131072\n[destinations.batch]\nmax_in_flight = 2\n";
    let config = base_config_on(&services, &group, &topic, port)
        + &fast_retry_destination("fifo", &stub, "q.fifo", extra);
    let mut bridge = Bridge::start(&config, "backpressure");

    // (pauses so far, partitions paused now); the buffer's peak is kept on the side.
    let mut max_buffered = 0.0f64;
    let mut watch = || {
        let (_, scrape) = http_get(port, "/metrics")?;
        let buffered = metric(&scrape, "kafka_sqs_bridge_buffered_bytes", &[]);
        max_buffered = max_buffered.max(buffered);
        Some((
            metric(&scrape, "kafka_sqs_bridge_backpressure_pauses_total", &[]),
            metric(&scrape, "kafka_sqs_bridge_paused_partitions", &[]),
        ))
    };

    // SQS keeps up: the loop only stops reading now and then, and never pauses.
    let deadline = Instant::now() + MINUTE;
    while stub.depth("q.fifo") < 3_000 {
        assert!(
            Instant::now() < deadline,
            "stalled at {}",
            stub.depth("q.fifo")
        );
        watch();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (pauses, _) = watch().expect("the bridge answers /metrics");
    assert_eq!(pauses, 0.0, "paused although SQS kept up");

    // Each request takes 3 s: nothing settles for longer than the second the loop waits.
    stub.update_faults(|f| f.delay_ms = 3_000);
    produce(&records, &topic, &sensor_records(3_000, 20, 2)).await;
    let deadline = Instant::now() + MINUTE;
    while watch().is_none_or(|(pauses, _)| pauses == 0.0) {
        assert!(
            Instant::now() < deadline,
            "a stalled destination never paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stub.update_faults(|f| f.delay_ms = 0);
    let deadline = Instant::now() + 2 * MINUTE;
    let mut paused = f64::NAN;
    while stub.depth("q.fifo") < 6_000 || paused != 0.0 {
        assert!(
            Instant::now() < deadline,
            "stalled at {} delivered, {paused} partitions paused",
            stub.depth("q.fifo")
        );
        if let Some((_, now_paused)) = watch() {
            paused = now_paused;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("peak buffered bytes seen: {max_buffered}");
    // Reading stops at the budget; a pause can let through what librdkafka had in hand.
    assert!(
        max_buffered < 2.0 * BUDGET,
        "buffered {max_buffered} bytes against a budget of {BUDGET}"
    );
    assert_eq!(stub.depth("q.fifo"), 6_000);
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 4, MINUTE);
    bridge.stop_cleanly();
}

/// With a 20 ms round trip and 30 message groups a partition, the buffered records' groups
/// are all in flight before a batch can fill: the bridge then pauses each partition that
/// holds more than its share of the budget (1 MiB of 4 MiB), resumes it once back to its
/// share, and delivers every record once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_over_their_share_are_paused_and_resumed_and_nothing_is_lost() {
    let faults = Faults {
        delay_ms: 20,
        ..Faults::default()
    };
    let extra = "max_buffered_bytes = 4194304\n[destinations.batch]\nmax_in_flight = 64\n";
    // The stub is kept to the end: the bridge stops against a live queue.
    let Drained {
        stub: _stub,
        mut bridge,
        port,
    } = drain_into_stub("shares", faults, 40_000, 120, extra).await;

    let scrape = http_get(port, "/metrics").expect("metrics").1;
    let share_pauses = metric(&scrape, "kafka_sqs_bridge_share_pauses_total", &[]);
    assert!(share_pauses > 0.0, "no partition was paused for its share");
    assert_eq!(
        metric(&scrape, "kafka_sqs_bridge_paused_partitions", &[]),
        0.0,
        "a partition stayed paused after the drain"
    );
    // A stall of a second on a crowded machine may pause everything once: logged, not
    // asserted.
    let stalls = metric(&scrape, "kafka_sqs_bridge_backpressure_pauses_total", &[]);
    eprintln!("share pauses: {share_pauses}, pauses after a stall: {stalls}");
    bridge.stop_cleanly();
}

/// librdkafka keeps a partition paused through a revoke. While a backlog drains at a 20 ms
/// round trip with five message groups a partition, about half the partitions are held for
/// their share (1 MiB of 8 MiB) at any time. A second instance joins and leaves until one
/// of the partitions it took came back held: the first instance must resume it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_revoked_while_paused_are_resumed_when_assigned_back() {
    let services = Services::from_env();
    let topic = unique("held");
    create_topic(&services, &topic, 8).await;
    let faults = Faults {
        delay_ms: 20,
        ..Faults::default()
    };
    let stub = SqsStub::start("127.0.0.1:0", faults).await.unwrap();
    produce(&producer(&services), &topic, &sensor_records(60_000, 40, 2)).await;
    let group = unique("held");
    let port = free_port();
    let destination = fast_retry_destination(
        "fifo",
        &stub,
        "q.fifo",
        "max_buffered_bytes = 8388608\n[destinations.batch]\nmax_in_flight = 64\n",
    );
    let mut first = Bridge::start(
        &(base_config_on(&services, &group, &topic, port) + &destination),
        "held_1",
    );
    let second_config = base_config(&services, &group, &topic) + &destination;
    let count = |bridge: &Bridge, text: &str| bridge.log_text().matches(text).count();
    let deadline = Instant::now() + MINUTE;
    while http_get(port, "/metrics").is_none_or(|(_, scrape)| {
        metric(&scrape, "kafka_sqs_bridge_share_pauses_total", &[]) == 0.0
    }) {
        assert!(Instant::now() < deadline, "no partition was held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut cycles = 0;
    while count(&first, "assigned back while paused") == 0 {
        cycles += 1;
        assert!(
            cycles <= 10 && stub.depth("q.fifo") < 60_000,
            "no held partition came back in {} cycles; log {}",
            cycles - 1,
            first.log.display()
        );
        let revoked = count(&first, "partitions revoked");
        let mut second = Bridge::start(&second_config, &format!("held_{}", cycles + 1));
        let deadline = Instant::now() + MINUTE;
        while count(&first, "partitions revoked") == revoked {
            assert!(
                Instant::now() < deadline,
                "the first instance gave nothing up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        second.stop_cleanly();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    wait_for_depth(&stub, "q.fifo", 60_000, 2 * MINUTE, &first).await;
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 8, MINUTE);
    assert_each_once_in_order(&stub, "q.fifo", 60_000);
    eprintln!("a held partition came back after {cycles} join and leave cycles");
    first.stop_cleanly();
}

/// With a 20 ms round trip, 16 batches in flight carry 8,000 records a second. Nothing
/// throttles here, so the window widens past its start of 16, and stops at its ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_window_widens_to_hide_a_slow_round_trip() {
    let faults = Faults {
        delay_ms: 20,
        ..Faults::default()
    };
    let extra = "[destinations.batch]\nmax_in_flight = 32\n";
    let Drained {
        stub,
        mut bridge,
        port,
    } = drain_into_stub("window", faults, 20_000, 400, extra).await;

    let stats = stub.stats();
    assert!(
        stats.peak_concurrent_requests > 16,
        "at most {} requests were in flight at once",
        stats.peak_concurrent_requests
    );
    assert!(
        stats.peak_concurrent_requests <= 32,
        "{} requests in flight, over the ceiling of 32",
        stats.peak_concurrent_requests
    );
    let scrape = http_get(port, "/metrics").expect("metrics").1;
    let limit = metric(&scrape, "kafka_sqs_bridge_in_flight_limit", &[]);
    assert!(
        limit > 16.0 && limit <= 32.0,
        "the window is {limit}, not between its start and its ceiling"
    );
    eprintln!(
        "window {limit}, peak requests in flight {}",
        stats.peak_concurrent_requests
    );
    bridge.stop_cleanly();
}

/// A queue that takes 100 requests a second, as SQS throttles above its quota: the bridge
/// halves its window when throttled, ending below its start of 16, and delivers every
/// record once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_narrows_the_in_flight_window_and_loses_nothing() {
    let faults = Faults {
        delay_ms: 20,
        request_quota_per_second: Some(100),
        ..Faults::default()
    };
    let Drained {
        stub,
        mut bridge,
        port,
    } = drain_into_stub("quota", faults, 6_000, 200, "").await;

    let stats = stub.stats();
    assert!(stats.over_quota > 0, "the quota never throttled: {stats:?}");
    let scrape = http_get(port, "/metrics").expect("metrics").1;
    let limit = metric(&scrape, "kafka_sqs_bridge_in_flight_limit", &[]);
    assert!(
        (1.0..16.0).contains(&limit),
        "throttled, yet the window is {limit}"
    );
    let throttled = metric(
        &scrape,
        "kafka_sqs_bridge_sqs_throttled_requests_total",
        &[],
    );
    assert!(throttled > 0.0, "the bridge counted no throttling");
    eprintln!(
        "window {limit}; {} of {} requests over the quota",
        stats.over_quota, stats.requests
    );
    bridge.stop_cleanly();
}

/// Instances join and leave while records flow; with `protocol` "classic" the bridge's
/// cooperative-sticky assignment is used, with "consumer" the broker-driven KIP-848 one.
async fn instances_join_and_leave(protocol: &str) {
    let services = Services::from_env();
    let topic = unique("rebalance");
    create_topic(&services, &topic, 6).await;
    let stub = SqsStub::start(
        "127.0.0.1:0",
        Faults {
            delay_ms: 5,
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let group = unique("rebalance");
    let mut config = base_config(&services, &group, &topic)
        + &fast_retry_destination("fifo", &stub, "q.fifo", "");
    if protocol == "consumer" {
        // The broker owns session timeouts and assignment under KIP-848.
        config = config
            .replace(
                "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
                "",
            )
            .replace(
                "[kafka.properties]\n",
                "[kafka.properties]\n\"group.protocol\" = \"consumer\"\n",
            );
    }
    let records = sensor_records(6_000, 100, 2);
    let producing = {
        let producer = producer(&services);
        let topic = topic.clone();
        let records = records.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(150) {
                produce(&producer, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let mut first = Bridge::start(&config, &format!("rebalance_{protocol}_1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = Bridge::start(&config, &format!("rebalance_{protocol}_2"));
    // Under KIP-848 the broker hands partitions over on heartbeats, five seconds apart.
    tokio::time::sleep(Duration::from_secs(8)).await;
    first.stop_cleanly();
    let mut third = Bridge::start(&config, &format!("rebalance_{protocol}_3"));
    producing.await.unwrap();
    wait_for_depth(&stub, "q.fifo", 6_000, 2 * MINUTE, &second).await;
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 6, MINUTE);

    assert_each_once_in_order(&stub, "q.fifo", 6_000);
    // The first instance handed partitions over, and the second took some.
    assert!(
        first.log_text().contains("partitions revoked"),
        "log {}",
        first.log.display()
    );
    assert!(
        second.log_text().contains("partitions assigned"),
        "log {}",
        second.log.display()
    );
    for bridge in [&mut second, &mut third] {
        bridge.stop_cleanly();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_keep_every_record_in_order_cooperative() {
    instances_join_and_leave("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_keep_every_record_in_order_kip_848() {
    instances_join_and_leave("consumer").await;
}

/// Stops the broker until dropped, when it is started again on the same data.
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> Self {
        services_script(&["down", "kafka"]);
        Self
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        services_script(&["up", "kafka"]);
    }
}

fn services_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .expect("scripts/services runs");
    assert!(status.success(), "scripts/services {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_broker_gone_ends_in_bounded_time() {
    let services = Services::from_env();
    let topic = unique("outage");
    create_topic(&services, &topic, 2).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    produce(&producer(&services), &topic, &sensor_records(100, 10, 1)).await;
    let group = unique("outage");
    // No periodic commit: the final one has work to do when the broker has gone.
    let config = base_config(&services, &group, &topic)
        .replace("drain_timeout_ms = 10000", "drain_timeout_ms = 2000")
        .replace("commit_interval_ms = 200", "commit_interval_ms = 600000")
        + &stub_destination("fifo", &stub, "q.fifo", "");
    let mut bridge = Bridge::start(&config, "broker_gone_stop");
    wait_for_depth(&stub, "q.fifo", 100, MINUTE, &bridge).await;

    let outage = BrokerOutage::begin();
    bridge.signal("TERM");
    let started = Instant::now();
    // The drain timeout (2 s) plus the final commit's allowance (10 s), and some slack.
    let status = bridge.wait(Duration::from_secs(20));
    let took = started.elapsed();
    drop(outage);

    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {took:?} after SIGTERM; log: {}",
            bridge.log.display()
        )
    });
    // Acknowledged offsets were left to commit, and the commit cannot succeed: not a clean
    // stop, and the bridge must say so, whether the commit failed or never finished.
    let log = bridge.log_text();
    assert_eq!(status.code(), Some(1), "log: {log}");
    assert!(
        log.contains("the final offset commit failed")
            || log.contains("shutdown did not finish in time"),
        "exit 1 must say why: {log}"
    );
    assert_eq!(stub.depth("q.fifo"), 100);
}
