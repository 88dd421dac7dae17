//! Rules that span several keys, checked after the values themselves were accepted.

use std::collections::HashSet;

use super::ca_bundle::read_ca_bundle;
use super::credentials_csv::read_access_key;
use super::secret::Secret;
use super::security::SaslMechanism;
use super::{Config, DestinationConfig, EmptyValuePolicy, Problem, UndeliverablePolicy};
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
pub(super) fn check(config: &Config, origin: &dyn Fn(&str) -> String) -> Vec<Problem> {
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
        if config.kafka.properties.contains_key(name) {
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

    problems
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
    if d.region().is_none() {
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
    if let Some(file) = &d.ca_bundle_file {
        if let Err(e) = read_ca_bundle(file) {
            problems.push(("ca_bundle_file", e.to_string()));
        }
        if d.endpoint_url
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            problems.push((
                "ca_bundle_file",
                "has no effect: endpoint_url is plain http, so no certificate is checked"
                    .to_owned(),
            ));
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

/// Reads the secrets the configuration points to (password files and variables) into
/// `config`, and checks the files it names: TLS files exist, credentials files parse.
pub(super) fn resolve_secrets(
    config: &mut Config,
    origin: &dyn Fn(&str) -> String,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |key: &str, message: String| {
        problems.push(Problem {
            key: key.to_owned(),
            origin: origin(key),
            message,
        });
    };
    let security = &mut config.kafka.security;
    let sasl = security.protocol.uses_sasl();
    let tls = security.protocol.uses_tls();
    let key = |name: &str| format!("kafka.security.{name}");

    if sasl {
        match security.sasl_mechanism {
            None => report(
                &key("sasl_mechanism"),
                "SASL needs a mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER".into(),
            ),
            Some(SaslMechanism::OauthBearer) => {
                if let Some(oidc) = &security.oidc {
                    if let Err(e) = url::Url::parse(&oidc.token_endpoint_url) {
                        report(
                            &key("oidc.token_endpoint_url"),
                            format!("{:?} is not a URL: {e}", oidc.token_endpoint_url),
                        );
                    }
                    let source = (&oidc.client_secret_file, &oidc.client_secret_env);
                    match read_file_or_env(source, "oidc.client_secret") {
                        Ok(secret) => security.resolved.oidc_client_secret = Some(secret),
                        Err((name, message)) => report(&key(&name), message),
                    }
                }
            }
            Some(_) => {
                if security.sasl_username.is_none() {
                    report(
                        &key("sasl_username"),
                        "PLAIN and SCRAM need a user name".into(),
                    );
                }
                let source = (&security.sasl_password_file, &security.sasl_password_env);
                match read_file_or_env(source, "sasl_password") {
                    Ok(secret) => security.resolved.sasl_password = Some(secret),
                    Err((name, message)) => report(&key(&name), message),
                }
            }
        }
        if security.oidc.is_some() && security.sasl_mechanism != Some(SaslMechanism::OauthBearer) {
            report(
                &key("oidc"),
                "OIDC tokens need sasl_mechanism = \"OAUTHBEARER\"".into(),
            );
        }
    } else if security.sasl_mechanism.is_some()
        || security.sasl_username.is_some()
        || security.oidc.is_some()
    {
        report(
            &key("protocol"),
            "SASL settings need protocol = \"sasl_plaintext\" or \"sasl_ssl\"".into(),
        );
    }

    let tls_files = [
        ("ca_file", &security.ca_file),
        ("certificate_file", &security.certificate_file),
        ("key_file", &security.key_file),
    ];
    for (name, file) in tls_files {
        let Some(file) = file else { continue };
        if !tls {
            report(
                &key("protocol"),
                format!("{name} needs protocol = \"ssl\" or \"sasl_ssl\""),
            );
        } else if let Err(e) = std::fs::File::open(file) {
            report(&key(name), format!("cannot read {}: {e}", file.display()));
        }
    }
    if security.certificate_file.is_some() != security.key_file.is_some() {
        report(
            &key("key_file"),
            "a client certificate needs both certificate_file and key_file".into(),
        );
    }
    if let Some(file) = &security.key_password_file {
        match read_secret_file(file) {
            Ok(secret) => security.resolved.key_password = Some(secret),
            Err(message) => report(&key("key_password_file"), message),
        }
    }

    for (index, destination) in config.destinations.iter().enumerate() {
        let key = |name: &str| format!("destinations.{index}.credentials.{name}");
        let credentials = &destination.credentials;
        if let Some(file) = &credentials.csv_file {
            if let Err(e) = read_access_key(file) {
                report(&key("csv_file"), e.to_string());
            }
        }
        if let Some(role) = &credentials.assume_role {
            if !role.role_arn.starts_with("arn:") || !role.role_arn.contains(":role/") {
                report(
                    &key("assume_role.role_arn"),
                    format!(
                        "{:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                        role.role_arn
                    ),
                );
            }
            if !(900..=43_200).contains(&role.duration_s) {
                report(
                    &key("assume_role.duration_s"),
                    format!("{} s; STS takes 900 to 43200", role.duration_s),
                );
            }
            if let Some(endpoint) = &role.sts_endpoint_url {
                if url::Url::parse(endpoint).is_err() {
                    report(
                        &key("assume_role.sts_endpoint_url"),
                        format!("{endpoint:?} is not a URL"),
                    );
                }
            }
        }
    }
    problems
}

/// A secret from `NAME_file` or `NAME_env`, exactly one of which must be set; on failure,
/// the key to blame and why.
fn read_file_or_env(
    (file, variable): (&Option<std::path::PathBuf>, &Option<String>),
    name: &str,
) -> Result<Secret, (String, String)> {
    match (file, variable) {
        (Some(file), None) => read_secret_file(file).map_err(|m| (format!("{name}_file"), m)),
        (None, Some(variable)) => match std::env::var(variable) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            _ => Err((
                format!("{name}_env"),
                format!("the environment variable {variable} is not set"),
            )),
        },
        _ => Err((
            format!("{name}_file"),
            format!("set exactly one of {name}_file and {name}_env"),
        )),
    }
}

/// The first line of a file, without its line end: how secrets are mounted.
fn read_secret_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.lines().next().unwrap_or_default().trim_end();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}
