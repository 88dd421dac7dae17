//! Produces sample Smart Network sensor records, keyed by device, for trying the bridge:
//! `cargo run --release --example sample_producer -- --count 200`.
//! It creates the topic when it does not exist yet.

use std::time::Duration;

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "smart-network.records")]
    topic: String,
    #[arg(long, default_value_t = 200)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    devices: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Records per second; 0 produces as fast as the broker takes them.
    #[arg(long, default_value_t = 50)]
    rate: u32,
}

const CUSTOMERS: [&str; 3] = [
    "ops@customer-a.example",
    "ops@customer-b.example",
    "facilities@customer-c.example",
];
const ROOMS: [&str; 4] = ["Room 101", "Room 102", "Room 201", "Lobby"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    create_topic(&args).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .create()?;
    let pause = if args.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs(1) / args.rate
    };
    for i in 0..args.count {
        let device = i % args.devices;
        let key = format!(
            "70-B3-D5-32-6B-00-{:02X}-{:02X}",
            device >> 8,
            device & 0xff
        );
        let value = sample(i, device, &key);
        let record = FutureRecord::to(&args.topic).key(&key).payload(&value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    println!("produced {} records to {}", args.count, args.topic);
    Ok(())
}

fn sample(i: usize, device: usize, key: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    serde_json::json!({
        "id": format!("{:08x}{:016x}", now.as_secs(), i),
        "recType": "io.microshare.environment.unpacked",
        "createDate": now.as_millis().to_string(),
        "creatorId": CUSTOMERS[device % CUSTOMERS.len()],
        "data": {
            "temperature": [{"unit": "°C", "value": 19.5 + (i % 40) as f64 / 10.0}],
            "humidity": [{"unit": "%RH", "value": 35 + (i % 20)}],
            "meta": {
                "iot": {"device_id": key},
                "device": ["HQ", "Floor 1", ROOMS[device % ROOMS.len()]],
                "global": ["Europe", "Ireland", "Dublin"],
                "usecase": "SC05"
            }
        }
    })
    .to_string()
}

async fn create_topic(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics(&[topic], &AdminOptions::new()).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code}").into()),
        }
    }
    Ok(())
}
