//! The command line: `run` streams records until stopped, `check` validates a configuration
//! and prints it as it will be used. Exit codes: 0 clean stop, 1 runtime failure, 2
//! configuration error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kafka_sqs_bridge::admin::{self, Health};
use kafka_sqs_bridge::config::{Config, LogFormat};
use kafka_sqs_bridge::metrics::Metrics;
use kafka_sqs_bridge::pipeline;
use kafka_sqs_bridge::shutdown::{self, Shutdown};
use tracing_subscriber::EnvFilter;

/// Streams Kafka records into Amazon SQS queues, committing offsets only after SQS
/// acknowledged the records.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until SIGTERM or SIGINT.
    Run {
        /// The TOML configuration file; BRIDGE_* variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and print it as it will be used.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also reach Kafka (brokers and topics) and resolve each destination's credentials.
        #[arg(long)]
        connect: bool,
        /// With --connect: send one probe message to each queue.
        #[arg(long, requires = "connect")]
        send_probe: bool,
    },
}

/// mimalloc returns freed memory to the system more readily than glibc's allocator does
/// with many threads, which keeps the resident size near what the bridge holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Run { config: path } | Command::Check { config: path, .. }) = &cli.command;
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprint!("kafka-sqs-bridge: {}: {error}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Check { connect: false, .. } => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Command::Check { send_probe, .. } => check_connectivity(&config, send_probe),
        Command::Run { .. } => run(config),
    }
}

fn run(config: Config) -> ExitCode {
    init_logging(&config);
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_RUNTIME);
    };
    runtime.block_on(async move {
        let shutdown = Shutdown::new();
        if let Err(error) = shutdown.listen_for_signals() {
            tracing::error!(%error, "cannot listen for signals");
            return ExitCode::from(EXIT_RUNTIME);
        }
        let stop_limit = Duration::from_millis(config.shutdown.drain_timeout_ms)
            + shutdown::FINAL_COMMIT_ALLOWANCE;
        shutdown.exit_if_stuck(stop_limit, i32::from(EXIT_RUNTIME));
        let metrics = Metrics::global();
        metrics.up.set(1);
        let unready_after = Duration::from_millis(config.admin.unready_after_failing_ms);
        Health::global().set_unready_after_failing(unready_after);
        let listener = match admin::bind(&config.admin.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(address = %config.admin.listen, %error, "cannot serve the admin endpoints");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let admin = tokio::spawn(admin::serve(listener, Health::global(), Arc::clone(&metrics), shutdown.clone()));
        let result = pipeline::run(Arc::new(config), shutdown.clone()).await;
        shutdown.trigger();
        let _ = admin.await;
        match result {
            Ok(()) => {
                tracing::info!("bridge stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "bridge stopped on a failure");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

fn check_connectivity(config: &Config, send_probe: bool) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_RUNTIME);
    };
    let all_ok = runtime.block_on(kafka_sqs_bridge::connect::check_connectivity(
        config, send_probe,
    ));
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUNTIME)
    }
}

/// The multi-threaded runtime: rebalance callbacks block one worker while the senders finish
/// on the others.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("kafka-sqs-bridge: cannot start the async runtime: {error}");
            None
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal who did not ask for none: a log collector
    // would store the escapes.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
