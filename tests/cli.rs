//! The command line on its own: `check`, exit codes and error messages. No services needed.

use std::io::Write;
use std::process::{Command, Output};

fn check(config: &str) -> Output {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(config.as_bytes()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
        .args(["check", "--config"])
        .arg(file.path())
        .env_remove("BRIDGE_KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .unwrap()
}

const VALID: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "g"
topics = ["records"]

[[destinations]]
name = "a"
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/a.fifo"
"#;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn example_configurations_pass_check() {
    for file in ["config/bridge.toml", "config/local.toml"] {
        let output = Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
            .args(["check", "--config", file])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}: {}", stderr(&output));
        let printed = String::from_utf8(output.stdout).unwrap();
        assert!(printed.contains("[[destinations]]"), "{printed}");
    }
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let output = check(&VALID.replace("group_id = \"g\"", "group_id = \"g\"\ngroup_idd = \"x\""));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("kafka.group_idd"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_queue_url_exits_2_naming_it() {
    let output = check(&VALID.replace(
        "https://sqs.us-east-1.amazonaws.com/123456789012/a.fifo",
        "not-a-url",
    ));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("destinations.0.queue_url"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn eleven_entries_exits_2_naming_the_key() {
    let output = check(&format!("{VALID}[destinations.batch]\nmax_entries = 11\n"));
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("destinations.0.batch.max_entries") && text.contains("1 to 10"),
        "{text}"
    );
}

#[test]
fn missing_file_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn version_and_help() {
    let run = |arg: &str| {
        Command::new(env!("CARGO_BIN_EXE_kafka-sqs-bridge"))
            .arg(arg)
            .output()
            .unwrap()
    };
    let version = run("--version");
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = run("--help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("run") && text.contains("check"), "{text}");
}

#[test]
fn a_ca_bundle_without_certificates_exits_2_naming_the_key_and_file() {
    let mut bundle = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
    bundle.write_all(b"not a certificate\n").unwrap();
    let path = bundle.path().display().to_string();
    let output = check(&format!("{VALID}ca_bundle_file = \"{path}\"\n"));
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("destinations.0.ca_bundle_file") && text.contains(&path),
        "{text}"
    );
}
