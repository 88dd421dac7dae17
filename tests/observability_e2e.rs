//! What operators watch: the metrics of a running bridge, the names the dashboard and the
//! alert rules use, a real Prometheus server scraping it, and the health endpoints when a
//! dependency is unreachable.

#![cfg(feature = "e2e-tests")]

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_sqs_bridge::stub::{Faults, SqsStub};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// A bridge with two destinations, one filtered, that has delivered `count` records.
struct Running {
    bridge: Bridge,
    port: u16,
    stub: SqsStub,
    taken_by_customer: usize,
}

async fn running_bridge(name: &str, count: usize) -> Running {
    let services = Services::from_env();
    let topic = unique(name);
    create_topic(&services, &topic, 3).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let records = sensor_records(count, 30, 3);
    let customer = customer_of(1, 3);
    let taken_by_customer = records
        .iter()
        .filter(|r| parse_sample(std::str::from_utf8(&r.value).unwrap()).customer == customer)
        .count();
    produce(&producer(&services), &topic, &records).await;

    let group = unique(name);
    let port = free_port();
    let filter = format!(
        "[destinations.filter]\nsource = {{ json_pointer = \"/creatorId\" }}\nequals = [\"{customer}\"]\n"
    );
    let config = base_config_on(&services, &group, &topic, port)
        + &stub_destination("all", &stub, "all.fifo", "")
        + &stub_destination("customer", &stub, "customer.fifo", &filter);
    let bridge = Bridge::start(&config, name);
    for name in ["all", "customer"] {
        wait_for_commits(&services, &format!("{group}.{name}"), &topic, 3, MINUTE);
    }
    Running {
        bridge,
        port,
        stub,
        taken_by_customer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_zero_lag_and_count_every_delivered_record() {
    let mut running = running_bridge("metrics", 2_000).await;
    let port = running.port;
    assert_eq!(running.stub.depth("all.fifo"), 2_000);
    assert_eq!(
        running.stub.depth("customer.fifo"),
        running.taken_by_customer
    );

    // librdkafka reports lag with its statistics, every five seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = http_get(port, "/metrics").expect("metrics").1;
        let lag_series = scrape
            .lines()
            .filter(|l| l.starts_with("kafka_sqs_bridge_consumer_lag_records{"))
            .count();
        let lag = metric(&scrape, "kafka_sqs_bridge_consumer_lag_records", &[]);
        if lag_series == 6 && lag == 0.0 {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "lag did not reach 0 on 6 partitions: {lag} over {lag_series} series"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (destination, delivered) in [
        ("all", 2_000.0),
        ("customer", running.taken_by_customer as f64),
    ] {
        let d = [("destination", destination)];
        assert_eq!(
            metric(&scrape, "kafka_sqs_bridge_records_sent_total", &d),
            delivered,
            "{destination}"
        );
        assert_eq!(
            metric(
                &scrape,
                "kafka_sqs_bridge_end_to_end_latency_seconds_count",
                &d
            ),
            delivered,
            "{destination}"
        );
        assert_eq!(
            metric(&scrape, "kafka_sqs_bridge_records_received_total", &d),
            2_000.0,
            "{destination}"
        );
    }
    let filtered = metric(
        &scrape,
        "kafka_sqs_bridge_records_filtered_total",
        &[("destination", "customer")],
    );
    assert_eq!(filtered as usize, 2_000 - running.taken_by_customer);
    let entries = metric(
        &scrape,
        "kafka_sqs_bridge_batch_entries_sum",
        &[("destination", "all")],
    );
    assert_eq!(
        entries, 2_000.0,
        "entries per batch add up to the records sent"
    );
    assert_eq!(
        metric(
            &scrape,
            "kafka_sqs_bridge_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    running.bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_exists_in_a_live_scrape() {
    let mut running = running_bridge("names", 300).await;
    // Lag comes with librdkafka's statistics, every five seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = http_get(running.port, "/metrics").expect("metrics").1;
        if scrape.contains("kafka_sqs_bridge_consumer_lag_records{") || Instant::now() > deadline {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let live: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            base.to_owned()
        })
        .collect();

    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-deploy"))
        .arg("--metric-names")
        .output()
        .expect("scripts/check-deploy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let used: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(used.len() > 15, "deploy/ should use most metrics: {used:?}");
    let missing: Vec<&String> = used.iter().filter(|name| !live.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "deploy/ refers to metrics a live bridge does not export: {missing:?}"
    );

    running.bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_server_scrapes_the_bridge() {
    let mut running = running_bridge("prometheus", 500).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kafka-sqs-bridge\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            running.port
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prometheus server (Debian's package; scripts/setup installs it)");

    let query =
        "/api/v1/query?query=sum(kafka_sqs_bridge_records_sent_total%7Bdestination%3D%22all%22%7D)";
    let deadline = Instant::now() + MINUTE;
    let answer = loop {
        if let Some((200, body)) = http_get(prometheus_port, query) {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(value) = json["data"]["result"][0]["value"][1].as_str() {
                break value.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the bridge"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(answer, "500");
    running.bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_kafka_keeps_the_bridge_alive_but_not_ready() {
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let port = free_port();
    let config = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ngroup_id = \"g\"\ntopics = [\"t\"]\n[admin]\nlisten = \"127.0.0.1:{port}\"\n"
    ) + &stub_destination("q", &stub, "q.fifo", "");
    let mut bridge = Bridge::start(&config, "unreachable_kafka");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (live, _) = http_get(port, "/healthz").expect("healthz answers");
    let (ready, why) = http_get(port, "/readyz").expect("readyz answers");
    assert_eq!(live, 200, "a bridge waiting for Kafka is alive");
    assert_eq!(ready, 503);
    assert!(why.contains("consumer group"), "{why}");
    bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sqs_turns_the_bridge_unready_after_the_configured_time() {
    let services = Services::from_env();
    let topic = unique("nosqs");
    create_topic(&services, &topic, 1).await;
    produce(&producer(&services), &topic, &sensor_records(20, 2, 1)).await;
    let closed = free_port();
    let port = free_port();
    let config = base_config_on(&services, &unique("nosqs"), &topic, port)
        .replace("[admin]\n", "[admin]\nunready_after_failing_ms = 2000\n")
        + &format!(
            "[[destinations]]\nname = \"q\"\nqueue_url = \"http://127.0.0.1:{closed}/000000000000/q.fifo\"\nendpoint_url = \"http://127.0.0.1:{closed}\"\nregion = \"us-east-1\"\n"
        );
    let mut bridge = Bridge::start(&config, "unreachable_sqs");
    let deadline = Instant::now() + MINUTE;
    loop {
        let ready = http_get(port, "/readyz");
        if let Some((503, why)) = &ready {
            if why.contains("every request failed") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never unready: {ready:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        http_get(port, "/healthz").unwrap().0,
        200,
        "waiting for SQS is no reason to restart"
    );
    bridge.stop_cleanly();
}
