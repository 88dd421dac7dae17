//! The wiring: for each destination, a consumer, a mapper, a scheduler and its senders, with
//! backpressure and poison-record handling. Destinations are independent: each has its own
//! consumer group and its own progress, so one customer's outage holds back nobody else.

pub mod delivery;
pub mod destination;
pub mod poison;
pub mod share;

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::{error, info};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Why a destination stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("destination {destination}: cannot create the Kafka consumer: {reason}")]
    Consumer { destination: String, reason: String },
    #[error("destination {destination}: cannot create the dead-letter producer: {reason}")]
    DeadLetterProducer { destination: String, reason: String },
    #[error(
        "destination {destination}: the final offset commit failed, so the records \
         acknowledged since the last commit will be sent again: {reason}"
    )]
    FinalCommit { destination: String, reason: String },
    #[error("destination {destination}: cannot build the SQS client: {reason}")]
    SqsClient { destination: String, reason: String },
    #[error("destination {destination}: stopped on an undeliverable record: {reason}")]
    Halted { destination: String, reason: String },
}

/// Runs every destination until `shutdown` fires or one of them fails; a failure stops the
/// others too. Returns the first failure.
pub async fn run(config: Arc<Config>, shutdown: Shutdown) -> Result<(), PipelineError> {
    let metrics = Metrics::global();
    let mut destinations = JoinSet::new();
    for index in 0..config.destinations.len() {
        let config = Arc::clone(&config);
        let shutdown = shutdown.clone();
        let metrics = Arc::clone(&metrics);
        destinations.spawn(async move { destination::run(config, index, shutdown, metrics).await });
    }
    info!(destinations = config.destinations.len(), "bridge running");

    let mut first_failure = None;
    while let Some(joined) = destinations.join_next().await {
        let result = joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        if let Err(failure) = result {
            error!(error = %failure, "destination stopped; stopping the others");
            shutdown.trigger();
            first_failure.get_or_insert(failure);
        }
    }
    first_failure.map_or(Ok(()), Err)
}
