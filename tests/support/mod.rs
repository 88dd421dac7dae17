//! Shared harness of the end-to-end tests: the real broker and LocalStack started by
//! `scripts/services up`, the release binary as a child process, and the checks on what
//! arrived.

#![allow(dead_code)]

pub mod token_endpoint;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Where the test services listen, from `scripts/services env`.
pub struct Services {
    pub kafka: String,
    pub sqs_endpoint: String,
}

impl Services {
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: start the services with `scripts/services up` and `eval \"$(scripts/services env)\"`, or run `scripts/test`")
            })
        };
        Self {
            kafka: read("TEST_KAFKA_BOOTSTRAP"),
            sqs_endpoint: read("TEST_SQS_ENDPOINT"),
        }
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

// ---------------------------------------------------------------- Kafka

pub async fn create_topic(services: &Services, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .create()
        .expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[new], &AdminOptions::new())
        .await
        .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(name, e)| panic!("cannot create topic {name}: {e}"));
    }
}

pub fn producer(services: &Services) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// One record to produce.
#[derive(Clone, Debug)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: Option<i32>,
}

/// Produces `records` in order and waits for every acknowledgement; returns (partition,
/// offset) of each.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> Vec<(i32, i64)> {
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(partition) = record.partition {
            message = message.partition(partition);
        }
        pending.push(
            producer
                .send_result(message)
                .expect("producer queue has room"),
        );
    }
    let mut coordinates = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivered = delivery
            .await
            .expect("delivery future")
            .expect("produce acknowledged");
        coordinates.push((delivered.partition, delivered.offset));
    }
    coordinates
}

/// The end offset of each partition of `topic`.
pub fn end_offsets(services: &Services, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// The offsets `group` committed for each partition of `topic` (-1 when none).
pub fn committed_offsets(
    services: &Services,
    group: &str,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                if let Offset::Offset(o) = e.offset() {
                    o
                } else {
                    -1
                },
            )
        })
        .collect()
}

/// Waits until `group` has committed the end of every partition of `topic`.
pub fn wait_for_commits(
    services: &Services,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) {
    let end = end_offsets(services, topic, partitions);
    let deadline = Instant::now() + timeout;
    loop {
        let committed = committed_offsets(services, group, topic, partitions);
        if committed == end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group}: committed {committed:?}, end {end:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- SQS

pub async fn sqs_client(services: &Services) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(&services.sqs_endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Creates a queue (FIFO when `name` ends in `.fifo`) and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    let created = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"));
    created.queue_url().expect("queue url").to_owned()
}

/// A message as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: String,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub sequence_number: Option<u128>,
    pub attributes: HashMap<String, String>,
}

/// The approximate number of messages in a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes");
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Receives and deletes messages until `expected` arrived, then until the queue stays empty
/// for `quiet` (to catch extras), or until `timeout`.
pub async fn drain_queue(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    expected: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut last_seen = Instant::now();
    loop {
        let enough = received.len() >= expected;
        if Instant::now() > deadline || (enough && last_seen.elapsed() > quiet) {
            return received;
        }
        let batch = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(if enough { 1 } else { 2 })
            .visibility_timeout(600)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let messages = batch.messages();
        if messages.is_empty() {
            continue;
        }
        last_seen = Instant::now();
        let mut delete = sqs.delete_message_batch().queue_url(url);
        for (i, m) in messages.iter().enumerate() {
            let system = m.attributes();
            let get = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name)).cloned();
            let attributes = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            received.push(Received {
                body: m.body().unwrap_or_default().to_owned(),
                group_id: get(MessageSystemAttributeName::MessageGroupId),
                deduplication_id: get(MessageSystemAttributeName::MessageDeduplicationId),
                sequence_number: get(MessageSystemAttributeName::SequenceNumber)
                    .and_then(|s| s.parse().ok()),
                attributes,
            });
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .unwrap(),
            );
        }
        delete.send().await.expect("delete batch");
    }
}

// ---------------------------------------------------------------- the bridge

/// The bridge binary running as a child process.
pub struct Bridge {
    child: Child,
    pub log: PathBuf,
    _config: tempfile::NamedTempFile,
}

impl Bridge {
    /// Starts `kafka-sqs-bridge run` on the given configuration text.
    pub fn start(config: &str, log_name: &str) -> Self {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(config.as_bytes()).unwrap();
        let log = log_dir().join(format!("{log_name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
            .args(["run", "--config"])
            .arg(file.path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "info,kafka_sqs_bridge=debug,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the bridge");
        Self {
            child,
            log,
            _config: file,
        }
    }

    /// SIGTERM, then an exit with status 0 within 30 seconds.
    pub fn stop_cleanly(&mut self) {
        self.stop_cleanly_within(Duration::from_secs(30));
    }

    /// SIGTERM, then an exit with status 0 within `timeout`.
    pub fn stop_cleanly_within(&mut self, timeout: Duration) {
        self.signal("TERM");
        let status = self.wait(timeout).expect("the bridge exits after SIGTERM");
        assert!(
            status.success(),
            "exit status {status:?}; log: {}; it ends:\n{}",
            self.log.display(),
            self.log_tail(20)
        );
    }

    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for a failure message: CI keeps no files.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where bridge logs go: `target/e2e-logs`, kept for reading after a failure.
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A destination table for a test configuration.
pub fn destination(name: &str, queue_url: &str, services: &Services, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nqueue_url = \"{queue_url}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n{extra}\n",
        services.sqs_endpoint
    )
}

/// A destination table for a queue of the in-process SQS stub.
pub fn stub_destination(
    name: &str,
    stub: &kafka_sqs_bridge::stub::SqsStub,
    queue: &str,
    extra: &str,
) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nqueue_url = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n{extra}\n",
        stub.queue_url(queue),
        stub.endpoint()
    )
}

/// The `[kafka]` table, `[admin]` on a free port, and a short drain.
pub fn base_config(services: &Services, group: &str, topic: &str) -> String {
    format!(
        "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{group}\"\ntopics = [\"{topic}\"]\ncommit_interval_ms = 200\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndrain_timeout_ms = 10000\n",
        services.kafka
    )
}

// ---------------------------------------------------------------- sample records

/// The Kafka key of device `n`: a LoRaWAN EUI, as the Smart Network keys its records.
pub fn device_key(n: usize) -> String {
    format!("58-A0-CB-00-00-10-{:02X}-{:02X}", (n >> 8) & 0xff, n & 0xff)
}

/// `count` Smart Network records over `devices` devices and `customers` owners; each value
/// carries its device's sequence number, so order per key can be checked on arrival.
pub fn sensor_records(count: usize, devices: usize, customers: usize) -> Vec<TestRecord> {
    let mut next_seq = vec![0u32; devices];
    (0..count)
        .map(|i| {
            let device = (i * 7919) % devices;
            let seq = next_seq[device];
            next_seq[device] += 1;
            let value = serde_json::json!({
                "id": format!("{:024x}", i),
                "recType": "io.microshare.environment.unpacked",
                "creatorId": customer_of(device, customers),
                "seq": seq,
                "data": {
                    "temperature": [{"unit": "°C", "value": 20.0 + (i % 50) as f64 / 10.0}],
                    "meta": {"iot": {"device_id": device_key(device)}, "usecase": "SC05"}
                }
            });
            TestRecord {
                key: Some(device_key(device).into_bytes()),
                value: serde_json::to_vec(&value).unwrap(),
                headers: vec![(
                    "recType".into(),
                    b"io.microshare.environment.unpacked".to_vec(),
                )],
                partition: None,
            }
        })
        .collect()
}

/// The owner of a device's records.
pub fn customer_of(device: usize, customers: usize) -> String {
    format!("ops@customer-{}.example", device % customers)
}

/// What a received sample record says about itself.
#[derive(Debug)]
pub struct Sample {
    pub id: String,
    pub device: String,
    pub seq: u64,
    pub customer: String,
}

pub fn parse_sample(body: &str) -> Sample {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    Sample {
        id: v["id"].as_str().unwrap().to_owned(),
        device: v["data"]["meta"]["iot"]["device_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        seq: v["seq"].as_u64().unwrap(),
        customer: v["creatorId"].as_str().unwrap().to_owned(),
    }
}

/// Checks FIFO order: within each message group, by SQS sequence number, `order_of` rises.
/// Returns the number of groups.
pub fn assert_ordered_per_group(
    messages: &[Received],
    order_of: impl Fn(&Received) -> u64,
) -> usize {
    assert_rising_per_group(messages.iter().map(|m| {
        let group = m.group_id.as_deref().expect("FIFO messages have a group");
        let sequence = m
            .sequence_number
            .expect("FIFO messages have a sequence number");
        (group, sequence, order_of(m))
    }))
}

/// Asserts that, within each group, ordered by the queue's sequence number, the records'
/// own order rises. Arrivals are (group, sequence number, record order); returns the number
/// of groups.
fn assert_rising_per_group<'a>(arrivals: impl IntoIterator<Item = (&'a str, u128, u64)>) -> usize {
    let mut groups: HashMap<&str, Vec<(u128, u64)>> = HashMap::new();
    for (group, sequence, order) in arrivals {
        groups.entry(group).or_default().push((sequence, order));
    }
    for (group, entries) in &mut groups {
        entries.sort_unstable();
        for pair in entries.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "group {group}: {} arrived before {}",
                pair[0].1,
                pair[1].1
            );
        }
    }
    groups.len()
}

// ---------------------------------------------------------------- metrics and topics

/// A loopback port free right now, for a bridge's admin server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `base_config` with the admin server on `port`.
pub fn base_config_on(services: &Services, group: &str, topic: &str, port: u16) -> String {
    base_config(services, group, topic).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
}

/// The text of `http://127.0.0.1:PORT/PATH`, with its status; `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The sum of every sample of `name` whose labels include all of `labels` (`k="v"` pairs).
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = metric_name == name
                && labels.iter().all(|(k, v)| {
                    label_text
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            if wanted {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// A record read back from a topic.
#[derive(Debug)]
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

/// Reads `expected` records from the start of `topic`, or what arrived within `timeout`.
pub fn consume_topic(
    services: &Services,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Consumed {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records
}

/// Checks FIFO order in a stub queue: per group, by sequence number, `order_of` rises.
pub fn assert_stub_ordered(
    messages: &[kafka_sqs_bridge::stub::StoredMessage],
    order_of: impl Fn(&kafka_sqs_bridge::stub::StoredMessage) -> u64,
) -> usize {
    assert_rising_per_group(messages.iter().map(|m| {
        (
            m.group_id.as_deref().unwrap_or("-"),
            u128::from(m.sequence_number),
            order_of(m),
        )
    }))
}
