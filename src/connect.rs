//! `check --connect`: whether a real configuration can reach what it names. For Kafka, the
//! brokers and every topic a destination reads; for each destination, whether its
//! credentials resolve. Nothing is sent unless a probe message is asked for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::ProvideCredentials;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{Config, DestinationConfig};
use crate::kafka::consumer::{client_config, describe_error};
use crate::message::OutgoingMessage;
use crate::sqs::client::{ClientSettings, build_client};
use crate::sqs::credentials::{credentials_provider, default_chain};
use crate::sqs::send::{BatchSender, error_chain};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Prints one line per check; returns whether every check passed.
pub async fn check_connectivity(config: &Config, send_probe: bool) -> bool {
    let mut all_ok = report("kafka", check_kafka(config));
    for destination in &config.destinations {
        let name = format!("destination {}", destination.name);
        let settings = ClientSettings::for_destination(destination, TIMEOUT);
        all_ok &= report(&name, check_credentials(&settings).await);
        if send_probe {
            all_ok &= report(
                &format!("{name} probe"),
                send_probe_message(destination, &settings).await,
            );
        }
    }
    all_ok
}

fn report(what: &str, result: Result<String, String>) -> bool {
    match result {
        Ok(detail) => {
            println!("ok      {what}: {detail}");
            true
        }
        Err(problem) => {
            println!("FAILED  {what}: {problem}");
            false
        }
    }
}

fn check_kafka(config: &Config) -> Result<String, String> {
    let consumer: BaseConsumer =
        client_config(&config.kafka, &format!("{}.check", config.kafka.group_id))
            .create()
            .map_err(|e| format!("cannot create a client: {}", describe_error(&e)))?;
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| format!("brokers unreachable: {e}"))?;
    let mut topics: Vec<&str> = config
        .destinations
        .iter()
        .flat_map(|d| d.topics(&config.kafka).iter().map(|t| t.as_str()))
        .collect();
    topics.sort_unstable();
    topics.dedup();
    let mut found = Vec::new();
    for topic in topics {
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .ok_or_else(|| format!("topic {topic} does not exist or cannot be read"))?;
        found.push(format!("{topic} ({partitions} partitions)"));
    }
    Ok(format!(
        "{} broker(s) reachable; topics {}",
        metadata.brokers().len(),
        found.join(", ")
    ))
}

async fn check_credentials(settings: &ClientSettings) -> Result<String, String> {
    let provider = match credentials_provider(&settings.credentials, &settings.region).await {
        Some(provider) => provider,
        None => default_chain(&aws_sdk_sqs::config::Region::new(settings.region.clone())).await,
    };
    let resolved = tokio::time::timeout(TIMEOUT, provider.provide_credentials())
        .await
        .map_err(|_| "credentials did not resolve in time".to_owned())?
        .map_err(|e| format!("credentials do not resolve: {}", error_chain(&e)))?;
    let source = if settings.credentials.assume_role.is_some() {
        "an assumed role"
    } else if settings.credentials.csv_file.is_some() {
        "the credentials file"
    } else {
        "the default provider chain"
    };
    let expiry = resolved.expiry().map(|_| ", temporary").unwrap_or_default();
    Ok(format!("credentials resolve from {source}{expiry}"))
}

async fn send_probe_message(
    d: &DestinationConfig,
    settings: &ClientSettings,
) -> Result<String, String> {
    let client = build_client(settings).await.map_err(|e| e.to_string())?;
    let sender = BatchSender::new(client, d.queue_url.as_str().to_owned());
    let sent_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis());
    let fifo = d.queue_url.is_fifo();
    let message = OutgoingMessage {
        body: format!("{{\"kafka-sqs-bridge\":\"probe\",\"sent_at_ms\":{sent_at}}}").into(),
        group_id: fifo.then(|| "kafka-sqs-bridge-probe".to_owned()),
        deduplication_id: fifo.then(|| format!("kafka-sqs-bridge-probe-{sent_at}")),
        attributes: Vec::new(),
    };
    let reply = sender.send(&[&message]).await.map_err(|e| e.to_string())?;
    match reply.failed.first() {
        None => Ok(format!(
            "probe message accepted in {} ms",
            reply.elapsed.as_millis()
        )),
        Some(failure) => Err(format!(
            "probe refused: {}: {}",
            failure.code, failure.message
        )),
    }
}
