//! Onboarding safely: Kafka over TLS and SASL on the real broker, AWS credentials from an
//! IAM CSV file and from a role assumed through LocalStack's STS, a least-privilege check
//! of every SQS action the bridge calls, and a hunt for planted secrets in everything the
//! bridge prints or serves.

#![cfg(feature = "e2e-tests")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kafka_sqs_bridge::stub::{Faults, SqsStub};
use support::token_endpoint::TokenEndpoint;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test"))
}

/// A configuration reading `topic` through `bootstrap` with `security` (a TOML table body),
/// delivering to the stub queue `q.fifo` with `destination_extra`.
#[allow(clippy::too_many_arguments)] // each test varies a different one
fn secure_config(
    services: &Services,
    bootstrap: &str,
    security: &str,
    stub: &SqsStub,
    topic: &str,
    group: &str,
    port: u16,
    destination_extra: &str,
) -> String {
    let base = base_config_on(services, group, topic, port).replace(
        &format!("bootstrap_servers = \"{}\"", services.kafka),
        &format!("bootstrap_servers = \"{bootstrap}\""),
    );
    format!(
        "{base}[kafka.security]\n{security}\n[[destinations]]\nname = \"q\"\nqueue_url = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n{destination_extra}\n",
        stub.queue_url("q.fifo"),
        stub.endpoint()
    )
}

/// `config` with `properties` (TOML lines) added to its `[kafka.properties]` table.
fn with_kafka_properties(config: &str, properties: &str) -> String {
    config.replace(
        "[kafka.properties]\n",
        &format!("[kafka.properties]\n{properties}"),
    )
}

async fn topic_with_records(services: &Services, count: usize) -> String {
    let topic = unique("secure");
    create_topic(services, &topic, 2).await;
    produce(&producer(services), &topic, &sensor_records(count, 10, 1)).await;
    topic
}

async fn delivers_through(security: &str, bootstrap: &str, name: &str) {
    delivers_with_properties(security, "", bootstrap, name).await;
}

/// As [`delivers_through`], with `properties` (TOML lines) added to `[kafka.properties]`.
async fn delivers_with_properties(security: &str, properties: &str, bootstrap: &str, name: &str) {
    let services = Services::from_env();
    let topic = topic_with_records(&services, 50).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let group = unique(name);
    let config = secure_config(
        &services,
        bootstrap,
        security,
        &stub,
        &topic,
        &group,
        free_port(),
        "",
    );
    let config = with_kafka_properties(&config, properties);
    let mut bridge = Bridge::start(&config, name);
    let deadline = std::time::Instant::now() + MINUTE;
    while stub.depth("q.fifo") < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: nothing arrived; log {}",
            bridge.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_commits(&services, &format!("{group}.q"), &topic, 2, MINUTE);
    bridge.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_and_scram_with_the_password_from_a_file() {
    let password_file = env("TEST_KAFKA_SASL_PASSWORD_FILE");
    let user = env("TEST_KAFKA_SASL_USER");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let security = format!(
            "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{user}\"\nsasl_password_file = \"{password_file}\"\n"
        );
        delivers_through(
            &security,
            &env("TEST_KAFKA_SASL"),
            &format!("sasl_{mechanism}"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_password_from_the_environment() {
    let password = std::fs::read_to_string(env("TEST_KAFKA_SASL_PASSWORD_FILE")).unwrap();
    // The bridge child inherits this process's environment.
    // SAFETY: no other thread of this test binary reads or writes the environment now.
    unsafe { std::env::set_var("TEST_BRIDGE_SASL_PASSWORD", password.trim()) };
    let security = format!(
        "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{}\"\nsasl_password_env = \"TEST_BRIDGE_SASL_PASSWORD\"\n",
        env("TEST_KAFKA_SASL_USER")
    );
    delivers_through(&security, &env("TEST_KAFKA_SASL"), "sasl_env").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_with_an_unsecured_token() {
    // librdkafka makes and refreshes the unsigned token itself; the broker's listener takes
    // unsigned tokens (scripts/services). OIDC token retrieval needs a librdkafka with curl.
    let security = "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"OAUTHBEARER\"\n";
    let properties = "\"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\
                      \"sasl.oauthbearer.config\" = \"principal=bridge lifeSeconds=60\"\n";
    delivers_with_properties(security, properties, &env("TEST_KAFKA_SASL"), "oauthbearer").await;
}

/// The `[kafka.security]` body for OIDC logins at `endpoint` with the secret in `secret_file`.
fn oidc_security(endpoint: &TokenEndpoint, secret_file: &str) -> String {
    format!(
        "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"OAUTHBEARER\"\n[kafka.security.oidc]\n\
         token_endpoint_url = \"{}\"\nclient_id = \"bridge\"\nclient_secret_file = \"{secret_file}\"\n\
         scope = \"kafka\"\n",
        endpoint.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_with_oidc_tokens_from_a_token_endpoint() {
    // The broker's OIDC listener takes only tokens signed by the test identity provider's
    // key (scripts/services); the endpoint hands one out for the right client secret.
    let secret_file = env("TEST_OIDC_CLIENT_SECRET_FILE");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let token = std::fs::read_to_string(env("TEST_OIDC_TOKEN_FILE")).unwrap();
    let endpoint = TokenEndpoint::start("bridge", secret.trim(), token.trim().to_owned());
    let security = oidc_security(&endpoint, &secret_file);
    delivers_through(&security, &env("TEST_KAFKA_OIDC"), "oidc").await;
    assert!(endpoint.granted() >= 1, "the bridge fetched its token");
    assert_eq!(endpoint.refused(), 0);

    // A wrong secret gets no token, so no connection; the secret is not printed.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "WRONG-OIDC-SECRET-PLANTED\n").unwrap();
    let security = oidc_security(&endpoint, &wrong.display().to_string());
    let (passed, text) = probe_through(&env("TEST_KAFKA_OIDC"), &security, "", "oidc_wrong").await;
    assert!(
        !passed,
        "Kafka must refuse a client without a token: {text}"
    );
    assert!(endpoint.refused() >= 1, "the endpoint saw the wrong secret");
    assert!(!text.contains("WRONG-OIDC-SECRET-PLANTED"), "{text}");
}

/// The unsigned tokens of OAUTHBEARER's default login are refused by the OIDC listener: it
/// really checks signatures, so getting through it means the OIDC login worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oidc_listener_refuses_unsigned_tokens() {
    let security = "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"OAUTHBEARER\"\n";
    let properties = "\"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\
                      \"sasl.oauthbearer.config\" = \"principal=bridge\"\n";
    let (passed, text) =
        probe_through(&env("TEST_KAFKA_OIDC"), security, properties, "unsigned").await;
    assert!(!passed, "an unsigned token must not get in: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_bundle_and_with_a_client_certificate() {
    let ca = env("TEST_KAFKA_CA");
    delivers_through(
        &format!("protocol = \"ssl\"\nca_file = \"{ca}\"\n"),
        &env("TEST_KAFKA_TLS"),
        "tls_ca",
    )
    .await;
    let mutual = format!(
        "protocol = \"ssl\"\nca_file = \"{ca}\"\ncertificate_file = \"{}\"\nkey_file = \"{}\"\nkey_password_file = \"{}\"\n",
        env("TEST_KAFKA_CLIENT_CERT"),
        env("TEST_KAFKA_CLIENT_KEY_ENCRYPTED"),
        env("TEST_KAFKA_CLIENT_KEY_PASSWORD_FILE")
    );
    delivers_through(&mutual, &env("TEST_KAFKA_TLS"), "tls_mutual").await;
}

/// Runs `check --connect --send-probe` on `config`; returns whether it passed, and its output.
fn send_probe(config: &str, dir: &Path) -> (bool, String) {
    let file = dir.join("probe.toml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
        .args(["check", "--connect", "--send-probe", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    (output.status.success(), printed(&output))
}

/// What a finished command printed: stdout, then stderr.
fn printed(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// [`send_probe`] for a bridge reading one fresh record through `bootstrap` with `security`
/// and `properties` (TOML lines added to `[kafka.properties]`), into a stub queue.
async fn probe_through(
    bootstrap: &str,
    security: &str,
    properties: &str,
    name: &str,
) -> (bool, String) {
    let services = Services::from_env();
    let dir = tempfile::tempdir().unwrap();
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let topic = topic_with_records(&services, 1).await;
    let config = secure_config(
        &services,
        bootstrap,
        security,
        &stub,
        &topic,
        &unique(name),
        free_port(),
        "",
    );
    send_probe(&with_kafka_properties(&config, properties), dir.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_verified_and_a_ca_bundle_trusts_a_private_one() {
    let services = Services::from_env();
    let dir = tempfile::tempdir().unwrap();
    let topic = topic_with_records(&services, 20).await;

    // The broker's certificate (127.0.0.1, signed by the test CA) serves the stub's HTTPS.
    let ca = env("TEST_KAFKA_CA");
    let tls_dir = Path::new(&ca).parent().unwrap();
    let stub = SqsStub::start_tls(
        "127.0.0.1:0",
        Faults::default(),
        &tls_dir.join("server.pem"),
        &tls_dir.join("server-key.pem"),
    )
    .await
    .unwrap();
    assert!(stub.endpoint().starts_with("https://"));
    let group = unique("private_ca");
    let config = |extra: &str| {
        secure_config(
            &services,
            &services.kafka,
            "",
            &stub,
            &topic,
            &group,
            free_port(),
            extra,
        )
    };

    // Without the bundle the test CA is unknown: the handshake fails and nothing is sent.
    let (passed, text) = send_probe(&config(""), dir.path());
    assert!(!passed, "the probe must fail without the CA bundle: {text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let stats = stub.stats();
    assert_eq!(
        stats.requests, 0,
        "no request may pass an unverified handshake"
    );
    assert!(stats.tls_handshakes_failed >= 1, "{stats:?}");

    // With it, the probe and then every record get through.
    let trusted = config(&format!("ca_bundle_file = \"{ca}\"\n"));
    let (passed, text) = send_probe(&trusted, dir.path());
    assert!(passed, "{text}");
    let mut bridge = Bridge::start(&trusted, "private_ca");
    wait_for_commits(&services, &format!("{group}.q"), &topic, 2, MINUTE);
    bridge.stop_cleanly();
    assert_eq!(stub.depth("q.fifo"), 21, "20 records and the probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_never_joins_and_is_not_printed() {
    let services = Services::from_env();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "WRONG-PASSWORD-PLANTED-1234\n").unwrap();
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let topic = topic_with_records(&services, 5).await;
    let port = free_port();
    let security = format!(
        "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"bridge\"\nsasl_password_file = \"{}\"\n",
        wrong.display()
    );
    let config = secure_config(
        &services,
        &env("TEST_KAFKA_SASL"),
        &security,
        &stub,
        &topic,
        &unique("wrong"),
        port,
        "",
    );
    let mut bridge = Bridge::start(&config, "sasl_wrong_password");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (ready, why) = http_get(port, "/readyz").expect("readyz");
    assert_eq!(ready, 503, "{why}");
    assert_eq!(stub.depth("q.fifo"), 0);
    bridge.stop_cleanly();
    let log = bridge.log_text();
    assert!(
        log.to_lowercase().contains("auth"),
        "the log should say authentication failed: {log}"
    );
    assert!(
        !log.contains("WRONG-PASSWORD-PLANTED"),
        "the password leaked into the log"
    );
}

/// An IAM CSV file with a planted secret key, mode 600.
fn credentials_csv(dir: &Path, access_key_id: &str, secret: &str) -> String {
    let path = dir.join("customer.csv");
    std::fs::write(
        &path,
        format!("\u{feff}User name,Password,Access key ID,Secret access key,Console login link\r\nsender,,{access_key_id},{secret},https://example.signin.aws.amazon.com/console\r\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_and_an_assumed_role_sign_the_requests() {
    let services = Services::from_env();
    let dir = tempfile::tempdir().unwrap();
    let topic = topic_with_records(&services, 20).await;

    // The file's key signs the requests.
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let csv = credentials_csv(dir.path(), "AKIAFILEKEY000000001", "file-secret-value");
    let credentials = format!("[destinations.credentials]\ncsv_file = \"{csv}\"\n");
    let group = unique("csv");
    let config = secure_config(
        &services,
        &services.kafka,
        "",
        &stub,
        &topic,
        &group,
        free_port(),
        &credentials,
    );
    let mut bridge = Bridge::start(&config, "credentials_csv");
    wait_for_commits(&services, &format!("{group}.q"), &topic, 2, MINUTE);
    bridge.stop_cleanly();
    assert_eq!(
        stub.stats().access_keys.into_iter().collect::<Vec<_>>(),
        vec!["AKIAFILEKEY000000001".to_owned()]
    );

    // A role assumed through LocalStack's STS with the file's key: SQS sees the role's key.
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();
    let credentials = format!(
        "[destinations.credentials]\ncsv_file = \"{csv}\"\n[destinations.credentials.assume_role]\n\
         role_arn = \"arn:aws:iam::000000000000:role/smart-network-sender\"\nexternal_id = \"EXTERNAL-ID-PLANTED\"\n\
         sts_endpoint_url = \"{}\"\n",
        services.sqs_endpoint
    );
    let group = unique("role");
    let config = secure_config(
        &services,
        &services.kafka,
        "",
        &stub,
        &topic,
        &group,
        free_port(),
        &credentials,
    );
    let mut bridge = Bridge::start(&config, "credentials_assume_role");
    wait_for_commits(&services, &format!("{group}.q"), &topic, 2, MINUTE);
    bridge.stop_cleanly();
    let keys = stub.stats().access_keys;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys.into_iter().next().unwrap();
    assert_ne!(
        key, "AKIAFILEKEY000000001",
        "the role's temporary key must sign, not the file's"
    );
    assert_eq!(stub.depth("q.fifo"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_appear_in_output_logs_or_metrics_and_only_sends_are_called() {
    let services = Services::from_env();
    let dir = tempfile::tempdir().unwrap();
    let topic = topic_with_records(&services, 200).await;
    let stub = SqsStub::start("127.0.0.1:0", Faults::default())
        .await
        .unwrap();

    // Every kind of secret the configuration can hold, each with a value we can look for.
    let sasl_password = std::fs::read_to_string(env("TEST_KAFKA_SASL_PASSWORD_FILE"))
        .unwrap()
        .trim()
        .to_owned();
    let key_password = std::fs::read_to_string(env("TEST_KAFKA_CLIENT_KEY_PASSWORD_FILE"))
        .unwrap()
        .trim()
        .to_owned();
    let private_key = std::fs::read_to_string(env("TEST_KAFKA_CLIENT_KEY_ENCRYPTED")).unwrap();
    let private_key_body = private_key.lines().nth(2).unwrap().to_owned();
    let aws_secret = "PLANTED/aws+secret/key/0123456789abcdef";
    let external_id = "PLANTED-external-id-42";
    let csv = credentials_csv(dir.path(), "AKIAPLANTED000000001", aws_secret);
    let security = format!(
        "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-256\"\nsasl_username = \"bridge\"\nsasl_password_file = \"{}\"\n",
        env("TEST_KAFKA_SASL_PASSWORD_FILE")
    );
    let credentials = format!(
        "[destinations.credentials]\ncsv_file = \"{csv}\"\n[destinations.credentials.assume_role]\n\
         role_arn = \"arn:aws:iam::000000000000:role/sender\"\nexternal_id = \"{external_id}\"\nsts_endpoint_url = \"{}\"\n",
        services.sqs_endpoint
    );
    let port = free_port();
    let group = unique("leak");
    let config = secure_config(
        &services,
        &env("TEST_KAFKA_SASL"),
        &security,
        &stub,
        &topic,
        &group,
        port,
        &credentials,
    );
    let config = with_kafka_properties(
        &config,
        "\"ssl.keystore.password\" = \"PLANTED-property-secret\"\n",
    );
    let config_file = dir.path().join("bridge.toml");
    std::fs::write(&config_file, &config).unwrap();

    let mut seen = String::new();
    let binary = env!("CARGO_BIN_EXE_kafka-sqs-bridge");
    for args in [
        vec!["check"],
        vec!["check", "--connect"],
        vec!["check", "--connect", "--send-probe"],
    ] {
        let output = Command::new(binary)
            .args(&args)
            .arg("--config")
            .arg(&config_file)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        let text = printed(&output);
        assert!(output.status.success(), "{args:?}: {text}");
        seen += &text;
    }
    assert!(
        seen.contains("**REDACTED**"),
        "check shows that secrets exist, redacted: {seen}"
    );

    // librdkafka's text for a refused property carries the value: it must not get through.
    // A misspelt name is the likely way to have a secret refused.
    let refused = dir.path().join("refused.toml");
    std::fs::write(
        &refused,
        config.replace("ssl.keystore.password", "sasl.oauthbearer.client.secrett"),
    )
    .unwrap();
    let output = Command::new(binary)
        .args(["check", "--connect", "--config"])
        .arg(&refused)
        .output()
        .unwrap();
    let text = printed(&output);
    assert!(
        !output.status.success() && text.contains("sasl.oauthbearer.client.secret"),
        "{text}"
    );
    seen += &text;

    // Start-up, traffic with failures, a refusing queue, and shutdown, at debug level. The
    // probe above is sent once, without retries, so the faults start only now.
    stub.set_faults(Faults {
        entry_fail_rate: 0.2,
        throttle_rate: 0.1,
        ..Faults::default()
    });
    let mut bridge = Bridge::start(&config, "secret_leak");
    let deadline = std::time::Instant::now() + MINUTE;
    while stub.depth("q.fifo") < 150 {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled; log {}",
            bridge.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stub.update_faults(|f| f.deny_sends = true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stub.update_faults(|f| f.deny_sends = false);
    wait_for_commits(&services, &format!("{group}.q"), &topic, 2, MINUTE);
    seen += &http_get(port, "/metrics").expect("metrics").1;
    seen += &http_get(port, "/readyz").expect("readyz").1;
    bridge.stop_cleanly();
    seen += &bridge.log_text();

    for (what, secret) in [
        ("SASL password", sasl_password.as_str()),
        ("key password", key_password.as_str()),
        ("private key", private_key_body.as_str()),
        ("AWS secret key", aws_secret),
        ("external id", external_id),
        ("secret property", "PLANTED-property-secret"),
    ] {
        assert!(!seen.contains(secret), "the {what} leaked");
    }
    assert!(
        seen.len() > 10_000,
        "the hunt read too little to mean anything"
    );

    let actions = stub.stats().actions;
    assert!(
        actions
            .keys()
            .all(|a| a == "SendMessageBatch" || a == "SendMessage"),
        "the bridge called more than it may: {actions:?}"
    );
}
