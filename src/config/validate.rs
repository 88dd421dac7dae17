//! Rules that span several keys, checked after the values themselves were accepted.

use std::collections::HashSet;

use super::{
    Config, ConfigError, DestinationConfig, EmptyValuePolicy, Problem, UndeliverablePolicy,
};
use crate::config::BodyFormat;

/// librdkafka properties that the bridge sets itself: overriding them would break the
/// promise that an offset is committed only after SQS acknowledged the record.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    ("group.id", "set kafka.group_id instead"),
    (
        "enable.auto.commit",
        "the bridge commits only acknowledged offsets itself",
    ),
    (
        "enable.auto.offset.store",
        "the bridge stores only acknowledged offsets itself",
    ),
];

/// Checks `config`; `origin` tells where the value at a dotted key came from.
pub(super) fn check(config: &Config, origin: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut report = |key: String, message: String| {
        let origin = origin(&key);
        problems.push(Problem {
            key,
            origin,
            message,
        });
    };

    if config.kafka.bootstrap_servers.trim().is_empty() {
        report(
            "kafka.bootstrap_servers".into(),
            "must name at least one broker".into(),
        );
    }
    if config.kafka.group_id.trim().is_empty() {
        report("kafka.group_id".into(), "must not be empty".into());
    }
    for (name, why) in OWNED_PROPERTIES {
        if config.kafka.properties.contains_key(*name) {
            report(
                format!("kafka.properties.{name}"),
                format!("cannot be set here: {why}"),
            );
        }
    }
    if config.destinations.is_empty() {
        report(
            "destinations".into(),
            "at least one [[destinations]] entry is required".into(),
        );
    }

    let mut names = HashSet::new();
    for (index, destination) in config.destinations.iter().enumerate() {
        let key = |suffix: &str| format!("destinations.{index}.{suffix}");
        if !names.insert(destination.name.as_str()) {
            report(
                key("name"),
                format!(
                    "{:?} is used by two destinations",
                    destination.name.as_str()
                ),
            );
        }
        for (suffix, message) in destination_problems(config, destination) {
            report(key(suffix), message);
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// Problems of one destination, as (key below the destination, message).
fn destination_problems(config: &Config, d: &DestinationConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let fifo = d.queue_url.is_fifo();

    if d.topics(&config.kafka).is_empty() {
        problems.push((
            "topics",
            "no topics: list them here or in kafka.topics".to_owned(),
        ));
    }
    if d.region.is_none() && d.queue_url.region().is_none() {
        problems.push((
            "region",
            format!(
                "cannot be read off queue_url {:?} (not an AWS host): set it",
                d.queue_url.as_str()
            ),
        ));
    }
    if let Some(endpoint) = &d.endpoint_url {
        if let Err(e) = url::Url::parse(endpoint) {
            problems.push(("endpoint_url", format!("{endpoint:?} is not a URL: {e}")));
        }
    }
    if let Some(filter) = &d.filter {
        if filter.equals.is_empty() {
            problems.push((
                "filter.equals",
                "lists no value, so no record would match".to_owned(),
            ));
        }
    }
    if d.message.deduplication_id.is_some() && !fifo {
        problems.push((
            "message.deduplication_id",
            "only FIFO queues take a deduplication id; this queue is standard".to_owned(),
        ));
    }
    if d.message.empty_values == EmptyValuePolicy::Send && d.message.format != BodyFormat::Envelope
    {
        problems.push((
            "message.empty_values",
            "\"send\" needs format = \"envelope\": SQS refuses an empty body".to_owned(),
        ));
    }
    if d.delivery.on_undeliverable == UndeliverablePolicy::DeadLetter
        && d.delivery.dead_letter_topic.is_none()
    {
        problems.push((
            "delivery.dead_letter_topic",
            "on_undeliverable = \"dead_letter\" needs a topic to produce to".to_owned(),
        ));
    }
    if d.batch.max_in_flight == 0 {
        problems.push(("batch.max_in_flight", "must be at least 1".to_owned()));
    }
    if d.delivery.retry_initial_ms == 0 || d.delivery.retry_initial_ms > d.delivery.retry_max_ms {
        problems.push((
            "delivery.retry_initial_ms",
            "must be at least 1 and at most delivery.retry_max_ms".to_owned(),
        ));
    }
    problems
}
