//! The chaos suite: records keep flowing while bridge instances are killed with SIGKILL at
//! random moments, the broker is restarted, SQS throttles and fails in bursts, entries fail
//! inside batches, and instances go from one to three and back to one. It ends with a line
//! `chaos: records=... delivered=... lost=0 reordered=0 duplicates=0 dead_lettered=0` and
//! fails unless nothing was lost, reordered or duplicated.
//!
//! `scripts/chaos` runs it at full size (200,000 records); the test suite runs it with
//! `CHAOS_RECORDS` at a smaller size. `CHAOS_SEED` replays a schedule.

#![cfg(feature = "e2e-tests")]

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_sqs_bridge::stub::{Faults, SqsStub, StoredMessage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

const PARTITIONS: i32 = 12;
const KEYS: usize = 1_000;

struct Chaos {
    services: Services,
    stub: SqsStub,
    topic: String,
    config: String,
    rng: StdRng,
    instances: Vec<Option<Bridge>>,
    started: Instant,
    log_prefix: String,
    restarts: usize,
}

impl Chaos {
    fn log(&self, what: &str) {
        eprintln!(
            "[chaos {:>6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Starts instance `slot` (0, 1 or 2), each with its own admin port.
    fn start(&mut self, slot: usize) {
        let config = self.config.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        );
        self.restarts += 1;
        let bridge = Bridge::start(
            &config,
            &format!("{}-{slot}-{}", self.log_prefix, self.restarts),
        );
        self.instances[slot] = Some(bridge);
        self.log(&format!("instance {slot} started"));
    }

    fn kill(&mut self, slot: usize) {
        if let Some(mut bridge) = self.instances[slot].take() {
            bridge.kill();
            self.log(&format!("instance {slot} killed with SIGKILL"));
        }
    }

    fn stop(&mut self, slot: usize) {
        if let Some(mut bridge) = self.instances[slot].take() {
            bridge.stop_cleanly_within(Duration::from_secs(40));
            self.log(&format!("instance {slot} stopped with SIGTERM"));
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|i| self.instances[*i].is_some())
            .collect()
    }

    fn sqs_weather(&mut self) {
        let stormy = self.rng.random_bool(0.5);
        let faults = if stormy {
            Faults {
                throttle_rate: 0.2,
                fail_rate: 0.1,
                reset_rate: 0.02,
                lose_reply_rate: 0.03,
                entry_fail_rate: 0.1,
                refuse_bodies_containing: Some("REFUSE-ME".into()),
                ..Faults::default()
            }
        } else {
            Faults {
                entry_fail_rate: 0.02,
                refuse_bodies_containing: Some("REFUSE-ME".into()),
                ..Faults::default()
            }
        };
        self.stub.set_faults(faults);
        self.log(if stormy {
            "SQS: a burst of throttling and failures"
        } else {
            "SQS: calm"
        });
    }

    fn restart_broker(&self) {
        self.log("restarting the Kafka broker");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
        let status = Command::new("bash")
            .args([script, "restart-kafka"])
            .status()
            .expect("services script");
        assert!(status.success(), "broker restart failed");
        self.log("Kafka broker back");
    }
}

/// Runs the schedule while `records` are produced, then waits until everything is settled.
async fn run_chaos(
    name: &str,
    records: Vec<TestRecord>,
    extra: &str,
    dead_letters: Option<&str>,
) -> Vec<StoredMessage> {
    let services = Services::from_env();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays this schedule)");
    let topic = unique(name);
    create_topic(&services, &topic, PARTITIONS).await;
    if let Some(dlq) = dead_letters {
        create_topic(&services, dlq, 1).await;
    }
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let group = unique(name);
    let destination = format!(
        "[[destinations]]\nname = \"fifo\"\nqueue_url = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
         [destinations.delivery]\nretry_initial_ms = 20\nretry_max_ms = 1000\ndestination_retry_max_ms = 2000\n{extra}\n",
        stub.queue_url("chaos.fifo"),
        stub.endpoint()
    );
    let config = base_config(&services, &group, &topic)
        .replace("drain_timeout_ms = 10000", "drain_timeout_ms = 20000")
        + &destination;
    let mut chaos = Chaos {
        services,
        stub,
        topic: topic.clone(),
        config,
        rng: StdRng::seed_from_u64(seed),
        instances: vec![None, None, None],
        started: Instant::now(),
        log_prefix: name.to_owned(),
        restarts: 0,
    };
    let total = records.len();

    // Records flow for about 40 seconds, whatever their number.
    let producing = {
        let producer = producer(&chaos.services);
        let topic = topic.clone();
        tokio::spawn(async move {
            let chunk = (total / 80).max(1);
            for part in records.chunks(chunk) {
                produce(&producer, &topic, part).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    chaos.start(0);
    let mut kills = 0;
    let mut broker_restarted = false;
    let mut scaled_up = false;
    let mut scaled_down = false;
    let mut next_weather = Instant::now();
    let mut next_kill =
        Instant::now() + Duration::from_millis(chaos.rng.random_range(2_000..6_000));
    while !producing.is_finished() || kills < 5 || !scaled_down {
        let t = chaos.started.elapsed();
        if Instant::now() >= next_weather {
            chaos.sqs_weather();
            next_weather =
                Instant::now() + Duration::from_millis(chaos.rng.random_range(1_000..4_000));
        }
        if !scaled_up && t > Duration::from_secs(8) {
            chaos.start(1);
            chaos.start(2);
            scaled_up = true;
        }
        if !broker_restarted && t > Duration::from_secs(14) {
            chaos.restart_broker();
            broker_restarted = true;
        }
        if scaled_up && !scaled_down && t > Duration::from_secs(26) {
            chaos.stop(1);
            chaos.stop(2);
            scaled_down = true;
        }
        if kills < 5 && Instant::now() >= next_kill {
            let running = chaos.running();
            let slot = running[chaos.rng.random_range(0..running.len())];
            chaos.kill(slot);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(chaos.rng.random_range(0..1_500))).await;
            chaos.start(slot);
            next_kill =
                Instant::now() + Duration::from_millis(chaos.rng.random_range(2_000..7_000));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producing.await.unwrap();
    chaos.stub.set_faults(Faults {
        refuse_bodies_containing: Some("REFUSE-ME".into()),
        ..Faults::default()
    });
    chaos.log("all records produced; SQS calm; waiting for the bridge to settle everything");

    let group = format!("{group}.fifo");
    wait_for_commits(
        &chaos.services,
        &group,
        &chaos.topic,
        PARTITIONS,
        Duration::from_secs(300),
    );
    chaos.log("every partition committed to its end");
    for slot in chaos.running() {
        chaos.stop(slot);
    }
    chaos.stub.messages("chaos.fifo")
}

/// Counts what arrived against what was produced and prints the verdict line.
fn verdict(
    produced: &[TestRecord],
    messages: &[StoredMessage],
    dead_lettered: usize,
) -> (usize, usize, usize) {
    let expected: HashSet<String> = produced
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .filter(|id| !id.starts_with("poison"))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in messages {
        *seen.entry(parse_sample(&m.body).id).or_default() += 1;
    }
    let lost = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();

    let mut groups: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for m in messages {
        groups
            .entry(m.group_id.as_deref().unwrap_or("-"))
            .or_default()
            .push((m.sequence_number, parse_sample(&m.body).seq));
    }
    let mut reordered = 0;
    for entries in groups.values_mut() {
        entries.sort_unstable();
        reordered += entries.windows(2).filter(|w| w[0].1 >= w[1].1).count();
    }
    println!(
        "chaos: records={} delivered={} lost={lost} reordered={reordered} duplicates={duplicates} dead_lettered={dead_lettered}",
        expected.len(),
        seen.len()
    );
    (lost, reordered, duplicates)
}

fn chaos_records() -> usize {
    std::env::var("CHAOS_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_reorders_and_duplicates_nothing() {
    let records = sensor_records(chaos_records(), KEYS, 3);
    let messages = run_chaos("chaos", records.clone(), "", None).await;
    let (lost, reordered, duplicates) = verdict(&records, &messages, 0);
    assert_eq!(
        (lost, reordered, duplicates),
        (0, 0, 0),
        "see the chaos line above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_poison_records_dead_letters_each_with_its_reason() {
    let dead_letters = unique("chaos-dlq");
    let mut records = sensor_records(chaos_records() / 4, KEYS, 3);
    let poison_kinds = [
        ("too_large", "\"pad\":\"PADDING\"", true),
        ("missing_group_id", "", false),
        ("missing_deduplication_id", "", true),
        ("refused_by_sqs", "\"text\":\"REFUSE-ME\"", true),
    ];
    let mut expected_reasons = HashMap::new();
    for i in 0..40 {
        let (reason, extra, has_device) = poison_kinds[i % poison_kinds.len()];
        let id = if reason == "missing_deduplication_id" {
            String::new()
        } else {
            format!("\"id\":\"poison-{i}\",")
        };
        let device = if has_device {
            format!(
                "\"data\":{{\"meta\":{{\"iot\":{{\"device_id\":\"{}\"}}}}}},",
                device_key(i)
            )
        } else {
            String::new()
        };
        let value = format!(
            "{{{id}{device}\"seq\":0,\"creatorId\":\"x\",\"poison\":{i}{}{extra}}}",
            if extra.is_empty() { "" } else { "," }
        )
        .replace("PADDING", &"x".repeat(70_000));
        expected_reasons.insert(i, reason);
        let at = (i + 1) * records.len() / 41;
        records.insert(
            at,
            TestRecord {
                key: Some(device_key(i).into_bytes()),
                value: value.into_bytes(),
                headers: vec![],
                partition: None,
            },
        );
    }
    let extra = format!(
        "on_undeliverable = \"dead_letter\"\ndead_letter_topic = \"{dead_letters}\"\n\
         [destinations.message]\ngroup_id = {{ json_pointer = \"/data/meta/iot/device_id\" }}\n\
         deduplication_id = {{ json_pointer = \"/id\" }}\n[destinations.batch]\nmax_batch_bytes = 65536\n"
    );
    let messages = run_chaos("chaos-poison", records.clone(), &extra, Some(&dead_letters)).await;

    let services = Services::from_env();
    let letters = consume_topic(
        &services,
        &dead_letters,
        usize::MAX,
        Duration::from_secs(15),
    );
    let mut reasons: HashMap<usize, HashSet<String>> = HashMap::new();
    for letter in &letters {
        let value: serde_json::Value =
            serde_json::from_slice(letter.value.as_deref().unwrap()).unwrap();
        let i = value["poison"]
            .as_u64()
            .expect("only poison records are dead-lettered") as usize;
        reasons
            .entry(i)
            .or_default()
            .insert(letter.headers["bridge.dead-letter.reason"].clone());
    }
    for (i, reason) in &expected_reasons {
        let got = reasons
            .get(i)
            .unwrap_or_else(|| panic!("poison record {i} ({reason}) was not dead-lettered"));
        assert_eq!(
            got,
            &HashSet::from([reason.to_string()]),
            "poison record {i}"
        );
    }
    let (lost, reordered, duplicates) = verdict(&records, &messages, letters.len());
    assert_eq!(
        (lost, reordered, duplicates),
        (0, 0, 0),
        "see the chaos line above"
    );
}
