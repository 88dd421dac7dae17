use std::io::Write;

use figment::providers::Env;

use super::*;

const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "bridge"
topics = ["records"]

[[destinations]]
name = "customer-a"
queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/customer-a.fifo"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    load_env(text, "BRIDGE_TEST_UNUSED_")
}

fn load_env(text: &str, prefix: &str) -> Result<Config, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    Config::load_with_env(file.path(), Env::prefixed(prefix).split("__"))
}

fn only_problem(result: Result<Config, ConfigError>) -> Problem {
    let error = result.expect_err("the configuration should be refused");
    assert_eq!(error.problems.len(), 1, "{error}");
    error.problems[0].clone()
}

#[test]
fn minimal_config_takes_defaults() {
    let config = load(MINIMAL).unwrap();
    let d = &config.destinations[0];
    assert_eq!(d.batch.max_entries.get(), 10);
    assert_eq!(d.message.group_id, None);
    assert!(d.queue_url.is_fifo());
    assert_eq!(d.queue_url.region(), Some("eu-west-1"));
}

#[test]
fn unknown_key_is_named_with_its_file() {
    let text = MINIMAL.replace(
        "group_id = \"bridge\"",
        "group_id = \"bridge\"\ngroup_idd = 1",
    );
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "kafka.group_idd");
    assert!(problem.message.contains("group_idd"), "{problem:?}");
    assert!(problem.origin.contains("TOML"), "{problem:?}");
}

#[test]
fn eleven_entries_names_the_key_and_the_limit() {
    let text = format!("{MINIMAL}[destinations.batch]\nmax_entries = 11\n");
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "destinations.0.batch.max_entries");
    assert!(problem.message.contains("1 to 10"), "{problem:?}");
}

#[test]
fn bad_queue_url_is_refused() {
    let text = MINIMAL.replace(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/",
        "sqs://x/",
    );
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "destinations.0.queue_url");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn environment_overrides_the_file_and_is_named_when_wrong() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("BRIDGE_T1_KAFKA__GROUP_ID", "from-env");
        let config = load_env(MINIMAL, "BRIDGE_T1_").unwrap();
        assert_eq!(config.kafka.group_id, "from-env");

        jail.set_env("BRIDGE_T2_KAFKA__COMMIT_INTERVAL_MS", "soon");
        let problem = only_problem(load_env(MINIMAL, "BRIDGE_T2_"));
        assert_eq!(problem.key, "kafka.commit_interval_ms");
        assert!(
            problem
                .origin
                .contains("BRIDGE_T2_KAFKA__COMMIT_INTERVAL_MS"),
            "{problem:?}"
        );

        jail.set_env("BRIDGE_T3_KAFKA__GROUPID", "typo");
        let problem = only_problem(load_env(MINIMAL, "BRIDGE_T3_"));
        assert!(problem.message.contains("groupid"), "{problem:?}");
        assert!(problem.origin.contains("BRIDGE_T3_"), "{problem:?}");
        Ok(())
    });
}

#[test]
fn standard_queue_refuses_a_deduplication_id() {
    let text = MINIMAL.replace("customer-a.fifo", "customer-a")
        + "[destinations.message]\ndeduplication_id = \"key\"\n";
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "destinations.0.message.deduplication_id");
}

#[test]
fn owned_kafka_properties_are_refused() {
    let text = MINIMAL.replace(
        "topics = [\"records\"]",
        "topics = [\"records\"]\nproperties = { \"enable.auto.offset.store\" = \"true\" }",
    );
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "kafka.properties.enable.auto.offset.store");
}

#[test]
fn missing_region_for_a_foreign_host_is_reported() {
    let text = MINIMAL.replace(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/customer-a.fifo",
        "http://127.0.0.1:4566/000000000000/customer-a.fifo",
    );
    let problem = only_problem(load(&text));
    assert_eq!(problem.key, "destinations.0.region");
}

#[test]
fn value_sources_read_as_tables() {
    let text = format!(
        "{MINIMAL}[destinations.message]\ngroup_id = {{ json_pointer = \"/data/meta/iot/device_id\" }}\n\
         deduplication_id = {{ json_pointer = \"/id\" }}\n\
         [destinations.filter]\nsource = {{ json_pointer = \"/creatorId\" }}\nequals = [\"a\"]\n"
    );
    let config = load(&text).unwrap();
    let d = &config.destinations[0];
    assert!(matches!(
        d.message.group_id,
        Some(GroupIdSource::JsonPointer(_))
    ));
    assert!(matches!(
        d.filter.as_ref().unwrap().source,
        ValueSource::JsonPointer(_)
    ));
    assert!(config.to_toml().contains("/creatorId"));
}

#[test]
fn missing_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/bridge.toml")).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/bridge.toml"),
        "{error}"
    );
}

#[test]
fn the_examples_fail_only_on_the_files_this_machine_lacks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        read += 1;
        let env = Env::prefixed("BRIDGE_TEST_UNUSED_").split("__");
        let Err(error) = Config::load_with_env(&path, env) else {
            continue;
        };
        for problem in &error.problems {
            let missing_file = problem.message.contains("cannot read")
                || problem.message.contains("cannot be read");
            assert!(missing_file, "{}: {problem:?}", path.display());
        }
    }
    assert!(read >= 5, "examples found: {read}");
}

/// MINIMAL with a `[kafka.security]` table of `body`.
fn with_security(body: &str) -> String {
    MINIMAL.replace(
        "[[destinations]]",
        &format!("[kafka.security]\n{body}\n[[destinations]]"),
    )
}

#[test]
fn oidc_reads_its_client_secret_and_needs_oauthbearer() {
    let mut secret = tempfile::NamedTempFile::new().unwrap();
    secret.write_all(b"oidc-client-secret-value\n").unwrap();
    let oidc = format!(
        "[kafka.security.oidc]\ntoken_endpoint_url = \"https://idp.example/token\"\n\
         client_id = \"bridge\"\nclient_secret_file = \"{}\"\n",
        secret.path().display()
    );
    let good = format!("protocol = \"sasl_ssl\"\nsasl_mechanism = \"OAUTHBEARER\"\n{oidc}");
    let config = load(&with_security(&good)).unwrap();
    let resolved = &config.kafka.security.resolved;
    let value = resolved
        .oidc_client_secret
        .as_ref()
        .map(secret::Secret::expose);
    assert_eq!(value, Some("oidc-client-secret-value"));
    assert!(!format!("{config:?}").contains("oidc-client-secret-value"));

    let scram = format!(
        "protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\n\
         sasl_password_file = \"{}\"\n{oidc}",
        secret.path().display()
    );
    let problem = only_problem(load(&with_security(&scram)));
    assert_eq!(problem.key, "kafka.security.oidc");
    assert!(problem.message.contains("OAUTHBEARER"), "{problem:?}");
}

#[test]
fn oidc_names_a_bad_endpoint_and_a_missing_secret() {
    let body = "protocol = \"sasl_ssl\"\nsasl_mechanism = \"OAUTHBEARER\"\n\
                [kafka.security.oidc]\ntoken_endpoint_url = \"not a url\"\n\
                client_id = \"bridge\"\n";
    let error = load(&with_security(body)).unwrap_err();
    let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "kafka.security.oidc.token_endpoint_url",
            "kafka.security.oidc.client_secret_file"
        ],
        "{error}"
    );
}
