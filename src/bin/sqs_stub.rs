//! The fault-injecting SQS stub as a process of its own, for benchmarks and manual tests:
//! `sqs-stub --listen 127.0.0.1:4577 --delay-ms 20`. Faults can be changed while it runs
//! with `PUT /_stub/faults`; `GET /_stub/stats` reports what it received.

use std::path::PathBuf;

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
    /// Requests a second taken before throttling, as SQS's quota of one queue would.
    #[arg(long)]
    request_quota_per_second: Option<u32>,
    /// Speak HTTPS with this PEM certificate chain, leaf first (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_certificate: Option<PathBuf>,
    /// The PEM private key of --tls-certificate.
    #[arg(long, requires = "tls_certificate")]
    tls_key: Option<PathBuf>,
    /// Keep no messages, only count and deduplicate them (`/_stub/messages` answers `[]`):
    /// for benchmarks, which send millions. The deduplication window still holds every
    /// FIFO id for five minutes, about a hundred bytes each.
    #[arg(long)]
    discard_messages: bool,
}

/// In a benchmark the stub shares the machine with the bridge: the system allocator would
/// spend a sixth of its time in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let faults = Faults {
        delay_ms: args.delay_ms,
        request_quota_per_second: args.request_quota_per_second,
        ..Faults::default()
    };
    let stub = match (&args.tls_certificate, &args.tls_key) {
        (Some(certificate), Some(key)) => {
            SqsStub::start_tls(&args.listen, faults, certificate, key).await?
        }
        _ => SqsStub::start(&args.listen, faults).await?,
    };
    if args.discard_messages {
        stub.discard_messages();
    }
    println!("sqs-stub listening on {}", stub.endpoint());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
