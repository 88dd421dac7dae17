//! Produces records as fast as the broker takes them, or at a steady rate, for the
//! benchmark: `--count 1000000 --size 256 --keys 1000 --rate 0`. Keys are spread evenly;
//! each value is JSON padded to `--size` bytes.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// Records per second; 0 is as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let started = Instant::now();
    let padding = "x".repeat(args.size);
    for i in 0..args.count {
        let key = format!("device-{:05}", i % args.keys);
        let head = format!("{{\"id\":\"{i:024x}\",\"device\":\"{key}\",\"pad\":\"");
        let room = args.size.saturating_sub(head.len() + 2);
        let value = format!("{head}{}\"}}", &padding[..room]);
        let mut record = BaseRecord::to(&args.topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    // The local queue is full: let librdkafka drain it.
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64((i + 1) as f64 / args.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "produced {} records of {} bytes in {elapsed:.1}s",
        args.count, args.size
    );
    Ok(())
}
