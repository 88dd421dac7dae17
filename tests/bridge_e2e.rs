//! The bridge end to end: the release binary against a real Kafka broker and LocalStack.
//! Run through `scripts/test`, which starts the services (`--features e2e-tests`).

#![cfg(feature = "e2e-tests")]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::*;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_per_key_and_offsets_are_committed() {
    let services = Services::from_env();
    let topic = unique("records");
    create_topic(&services, &topic, 8).await;
    let sqs = sqs_client(&services).await;
    let fifo = create_queue(&sqs, &format!("{}.fifo", unique("all"))).await;
    let standard = create_queue(&sqs, &unique("std")).await;
    let filtered = create_queue(&sqs, &format!("{}.fifo", unique("cust"))).await;

    let records = sensor_records(20_000, 500, 5);
    produce(&producer(&services), &topic, &records).await;
    let customer = customer_of(2, 5);
    let customer_ids: HashSet<String> = records
        .iter()
        .map(|r| parse_sample(std::str::from_utf8(&r.value).unwrap()))
        .filter(|s| s.customer == customer)
        .map(|s| s.id)
        .collect();

    let group = unique("e2e");
    let filter = format!(
        "[destinations.filter]\nsource = {{ json_pointer = \"/creatorId\" }}\nequals = [\"{customer}\"]\n"
    );
    let config = base_config(&services, &group, &topic)
        + &destination("fifo", &fifo, &services, "")
        + &destination("standard", &standard, &services, "")
        + &destination("customer", &filtered, &services, &filter);
    let mut bridge = Bridge::start(&config, "every_record_arrives");

    let started = std::time::Instant::now();
    let (got_fifo, got_standard, got_filtered) = tokio::join!(
        drain_queue(&sqs, &fifo, 20_000, Duration::from_secs(3), 5 * MINUTE),
        drain_queue(&sqs, &standard, 20_000, Duration::from_secs(3), 5 * MINUTE),
        drain_queue(
            &sqs,
            &filtered,
            customer_ids.len(),
            Duration::from_secs(3),
            5 * MINUTE
        ),
    );

    eprintln!(
        "received {} + {} + {} messages in {:?}",
        got_fifo.len(),
        got_standard.len(),
        got_filtered.len(),
        started.elapsed()
    );
    let ids = |messages: &[Received]| -> Vec<String> {
        messages.iter().map(|m| parse_sample(&m.body).id).collect()
    };
    let fifo_ids = ids(&got_fifo);
    assert_eq!(
        fifo_ids.len(),
        20_000,
        "FIFO queue: {} of 20000 messages",
        fifo_ids.len()
    );
    assert_eq!(
        fifo_ids.iter().collect::<HashSet<_>>().len(),
        20_000,
        "FIFO queue holds duplicates"
    );
    for m in &got_fifo {
        assert_eq!(
            m.group_id.as_deref(),
            Some(parse_sample(&m.body).device.as_str()),
            "group id is the key"
        );
    }
    let groups = assert_ordered_per_group(&got_fifo, |m| parse_sample(&m.body).seq);
    assert_eq!(groups, 500);

    let standard_ids: HashSet<String> = ids(&got_standard).into_iter().collect();
    assert_eq!(standard_ids.len(), 20_000, "standard queue misses records");
    assert!(
        got_standard
            .iter()
            .all(|m| m.group_id.is_none() && m.deduplication_id.is_none())
    );

    let filtered_ids: HashSet<String> = ids(&got_filtered).into_iter().collect();
    assert_eq!(
        got_filtered.len(),
        customer_ids.len(),
        "the filtered queue got other customers' records or duplicates"
    );
    assert_eq!(filtered_ids, customer_ids);

    for name in ["fifo", "standard", "customer"] {
        wait_for_commits(&services, &format!("{group}.{name}"), &topic, 8, MINUTE);
    }
    eprintln!("offsets committed after {:?}", started.elapsed());
    bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_duplicates_nothing() {
    let services = Services::from_env();
    let topic = unique("kill");
    create_topic(&services, &topic, 4).await;
    let sqs = sqs_client(&services).await;
    let fifo = create_queue(&sqs, &format!("{}.fifo", unique("kill"))).await;

    let records = sensor_records(8_000, 200, 3);
    produce(&producer(&services), &topic, &records).await;
    let group = unique("kill");
    let config =
        base_config(&services, &group, &topic) + &destination("fifo", &fifo, &services, "");

    let mut first = Bridge::start(&config, "sigkill_first");
    let deadline = std::time::Instant::now() + MINUTE;
    while queue_depth(&sqs, &fifo).await < 2_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge sent nothing; log: {}",
            first.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();
    let committed_at_kill = committed_offsets(&services, &format!("{group}.fifo"), &topic, 4);
    let total_at_kill: i64 = committed_at_kill.values().map(|o| (*o).max(0)).sum();
    assert!(
        total_at_kill < 8_000,
        "killed after everything was committed; the test proves nothing"
    );

    let mut second = Bridge::start(&config, "sigkill_second");
    let received = drain_queue(&sqs, &fifo, 8_000, Duration::from_secs(5), 5 * MINUTE).await;
    let mut seen = HashMap::new();
    for m in &received {
        *seen.entry(parse_sample(&m.body).id).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicates in the FIFO queue: {duplicates:?}"
    );
    assert_eq!(seen.len(), 8_000, "records missing after the restart");
    assert_ordered_per_group(&received, |m| parse_sample(&m.body).seq);
    wait_for_commits(&services, &format!("{group}.fifo"), &topic, 4, MINUTE);

    second.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_records_flow_exits_cleanly_with_acknowledged_offsets_committed() {
    let services = Services::from_env();
    let topic = unique("term");
    create_topic(&services, &topic, 4).await;
    let sqs = sqs_client(&services).await;
    let fifo = create_queue(&sqs, &format!("{}.fifo", unique("term"))).await;
    let group = unique("term");
    let config =
        base_config(&services, &group, &topic) + &destination("fifo", &fifo, &services, "");
    let mut bridge = Bridge::start(&config, "sigterm");

    // Records keep coming while the bridge is told to stop.
    let producing = {
        let producer = producer(&services);
        let topic = topic.clone();
        tokio::spawn(async move {
            for chunk in sensor_records(6_000, 100, 2).chunks(200) {
                produce(&producer, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let deadline = std::time::Instant::now() + MINUTE;
    while queue_depth(&sqs, &fifo).await < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing sent; log: {}",
            bridge.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.signal("TERM");
    let status = bridge
        .wait(Duration::from_secs(15))
        .expect("exit within the drain timeout");
    assert!(status.success(), "exit status {status:?}");
    producing.await.unwrap();

    // Whatever reached the queue forms, per partition, exactly the committed prefix.
    let committed = committed_offsets(&services, &format!("{group}.fifo"), &topic, 4);
    let received = drain_queue(&sqs, &fifo, usize::MAX, Duration::from_secs(3), MINUTE).await;
    let mut delivered: HashMap<i32, Vec<i64>> = HashMap::new();
    for m in &received {
        let id = m.deduplication_id.as_deref().expect("dedup id");
        let mut parts = id.rsplitn(3, ':');
        let offset: i64 = parts.next().unwrap().parse().unwrap();
        let partition: i32 = parts.next().unwrap().parse().unwrap();
        delivered.entry(partition).or_default().push(offset);
    }
    for partition in 0..4 {
        let mut offsets = delivered.remove(&partition).unwrap_or_default();
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..committed[&partition].max(0)).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: delivered offsets are not the committed prefix"
        );
    }
    assert!(
        received.len() < 6_000,
        "everything was delivered before SIGTERM; the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bytes_keyless_records_and_long_keys_arrive_valid() {
    let services = Services::from_env();
    let topic = unique("odd");
    create_topic(&services, &topic, 2).await;
    let sqs = sqs_client(&services).await;
    let fifo = create_queue(&sqs, &format!("{}.fifo", unique("odd"))).await;

    let long_key = "k".repeat(300);
    let mut records = vec![TestRecord {
        key: Some(b"binary".to_vec()),
        value: b"\x00\x01 not text \xff".to_vec(),
        headers: vec![],
        partition: Some(0),
    }];
    for i in 0..50u32 {
        records.push(TestRecord {
            key: None,
            value: format!("{{\"n\":{i}}}").into_bytes(),
            headers: vec![],
            partition: Some(1),
        });
    }
    records.push(TestRecord {
        key: Some(long_key.clone().into_bytes()),
        value: b"{\"long\":true}".to_vec(),
        headers: vec![],
        partition: Some(0),
    });
    produce(&producer(&services), &topic, &records).await;

    let group = unique("odd");
    let config =
        base_config(&services, &group, &topic) + &destination("fifo", &fifo, &services, "");
    let mut bridge = Bridge::start(&config, "odd_records");
    let received = drain_queue(
        &sqs,
        &fifo,
        records.len(),
        Duration::from_secs(3),
        2 * MINUTE,
    )
    .await;
    assert_eq!(received.len(), records.len());

    let binary = received
        .iter()
        .find(|m| m.group_id.as_deref() == Some("binary"))
        .expect("binary record");
    assert_eq!(
        binary.attributes.get("body-encoding").map(String::as_str),
        Some("base64")
    );
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&binary.body)
        .unwrap();
    assert_eq!(decoded, b"\x00\x01 not text \xff");

    let keyless: Vec<Received> = received
        .iter()
        .filter(|m| m.body.starts_with("{\"n\""))
        .cloned()
        .collect();
    assert_eq!(keyless.len(), 50);
    let groups = assert_ordered_per_group(&keyless, |m| {
        serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["n"]
            .as_u64()
            .unwrap()
    });
    assert_eq!(
        groups, 1,
        "keyless records of one partition share one group"
    );

    let long = received
        .iter()
        .find(|m| m.body == "{\"long\":true}")
        .expect("long-key record");
    let group_id = long.group_id.as_deref().unwrap();
    assert!(
        group_id.starts_with("sha256-") && group_id.len() == 71,
        "{group_id}"
    );
    assert_eq!(
        group_id,
        kafka_sqs_bridge::message::ids::sqs_id(long_key.as_bytes())
    );

    bridge.stop_cleanly();
}
