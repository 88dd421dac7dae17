//! The fault-injecting SQS stub as a process of its own, for benchmarks and manual tests:
//! `sqs-stub --listen 127.0.0.1:4577 --delay-ms 20`. Faults can be changed while it runs
//! with `PUT /_stub/faults`; `GET /_stub/stats` reports what it received.

use clap::Parser;
use kafka_sqs_bridge::stub::{Faults, SqsStub};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:4577")]
    listen: String,
    /// Round-trip delay added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let stub = SqsStub::start(
        &args.listen,
        Faults {
            delay_ms: args.delay_ms,
            ..Faults::default()
        },
    )
    .await?;
    println!("sqs-stub listening on {}", stub.endpoint());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
