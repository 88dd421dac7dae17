//! Configuration values that carry their own rules. Each is checked while it is
//! deserialized, so a wrong value is reported with its key and its source.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// SQS refuses a `SendMessageBatch` of more than ten entries.
pub const SQS_MAX_BATCH_ENTRIES: u8 = 10;
/// SQS's limit for one message and for one whole batch request: 1 MiB.
pub const SQS_MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Entries per batch, 1 to 10.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "u64", into = "u64")]
pub struct MaxEntries(u8);

impl MaxEntries {
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for MaxEntries {
    fn default() -> Self {
        Self(SQS_MAX_BATCH_ENTRIES)
    }
}

impl TryFrom<u64> for MaxEntries {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, String> {
        match u8::try_from(value) {
            Ok(n @ 1..=SQS_MAX_BATCH_ENTRIES) => Ok(Self(n)),
            _ => Err(format!(
                "{value} entries, but SendMessageBatch takes 1 to {SQS_MAX_BATCH_ENTRIES}"
            )),
        }
    }
}

impl From<MaxEntries> for u64 {
    fn from(value: MaxEntries) -> Self {
        u64::from(value.0)
    }
}

/// Bytes per batch request, 1 to 1 MiB.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "u64", into = "u64")]
pub struct BatchBytes(usize);

impl BatchBytes {
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for BatchBytes {
    fn default() -> Self {
        Self(SQS_MAX_REQUEST_BYTES)
    }
}

impl TryFrom<u64> for BatchBytes {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, String> {
        match usize::try_from(value) {
            Ok(n @ 1..=SQS_MAX_REQUEST_BYTES) => Ok(Self(n)),
            _ => Err(format!(
                "{value} bytes, but a batch request holds 1 to {SQS_MAX_REQUEST_BYTES} bytes"
            )),
        }
    }
}

impl From<BatchBytes> for u64 {
    fn from(value: BatchBytes) -> Self {
        value.0 as u64
    }
}

/// A destination's name: it appears in metric labels and in a consumer group id, so it is
/// kept to `[A-Za-z0-9_-]`, 1 to 64 characters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct DestinationName(String);

impl DestinationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DestinationName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if value.is_empty() || value.len() > 64 || !valid_chars {
            return Err(format!(
                "{value:?}: a name is 1 to 64 characters of [A-Za-z0-9_-]"
            ));
        }
        Ok(Self(value))
    }
}

impl From<DestinationName> for String {
    fn from(value: DestinationName) -> Self {
        value.0
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kafka topic name: 1 to 249 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if value.is_empty() || value.len() > 249 || !valid_chars {
            return Err(format!(
                "{value:?}: a Kafka topic is 1 to 249 characters of [A-Za-z0-9._-]"
            ));
        }
        Ok(Self(value))
    }
}

impl From<TopicName> for String {
    fn from(value: TopicName) -> Self {
        value.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 6901 JSON pointer such as `/data/meta/iot/device_id`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub struct JsonPointer(String);

impl JsonPointer {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JsonPointer {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if !value.starts_with('/') {
            return Err(format!(
                "{value:?}: a JSON pointer starts with '/', as in \"/id\""
            ));
        }
        Ok(Self(value))
    }
}

impl From<JsonPointer> for String {
    fn from(value: JsonPointer) -> Self {
        value.0
    }
}

/// An SQS queue URL, `https://sqs.<region>.amazonaws.com/<account>/<name>`, or any URL whose
/// last path segment is the queue name (LocalStack and other emulators).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub struct QueueUrl {
    url: String,
    name: String,
    region: Option<String>,
}

impl QueueUrl {
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The queue's name, the last segment of the path.
    pub fn queue_name(&self) -> &str {
        &self.name
    }

    /// FIFO queues, and only they, have names ending in `.fifo`.
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    /// The region named by an AWS host (`sqs.eu-west-1.amazonaws.com`), if it is one.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

impl TryFrom<String> for QueueUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let expected = "expected a queue URL such as \
                        https://sqs.eu-west-1.amazonaws.com/123456789012/readings.fifo";
        let url =
            Url::parse(&value).map_err(|e| format!("{value:?} is not a URL ({e}); {expected}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("{value:?} is not an http(s) URL; {expected}"));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let Some(name) = segments.last().map(|s| (*s).to_owned()) else {
            return Err(format!("{value:?} names no queue; {expected}"));
        };
        if segments.len() < 2 {
            return Err(format!(
                "{value:?} has no account id before the queue name; {expected}"
            ));
        }
        let valid_name = name.len() <= 80
            && name
                .trim_end_matches(".fifo")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!(
                "{value:?}: queue name {name:?} is not 1 to 80 characters of [A-Za-z0-9_-] \
                 (with an optional .fifo suffix)"
            ));
        }
        Ok(Self {
            region: region_of_aws_host(&host),
            name,
            url: value,
        })
    }
}

impl From<QueueUrl> for String {
    fn from(value: QueueUrl) -> Self {
        value.url
    }
}

/// `sqs.<region>.amazonaws.com[.cn]` or the legacy `<region>.queue.amazonaws.com`.
fn region_of_aws_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, "amazonaws", "com", ..] => Some((*region).to_owned()),
        [region, "queue", "amazonaws", "com", ..] => Some((*region).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_queue_url_gives_region_and_fifo() {
        let url = QueueUrl::try_from(
            "https://sqs.eu-west-1.amazonaws.com/123456789012/readings.fifo".to_owned(),
        )
        .unwrap();
        assert_eq!(url.region(), Some("eu-west-1"));
        assert_eq!(url.queue_name(), "readings.fifo");
        assert!(url.is_fifo());
    }

    #[test]
    fn localstack_queue_url_has_no_region() {
        let url = QueueUrl::try_from(
            "http://127.0.0.1:4566/queue/us-east-1/000000000000/plain".to_owned(),
        )
        .unwrap();
        assert_eq!(url.region(), None);
        assert!(!url.is_fifo());
    }

    #[test]
    fn queue_url_without_account_is_refused() {
        let err = QueueUrl::try_from("https://sqs.us-east-1.amazonaws.com/q".to_owned());
        assert!(err.unwrap_err().contains("account"));
        assert!(QueueUrl::try_from("not a url".to_owned()).is_err());
        assert!(QueueUrl::try_from("ftp://host/1/q".to_owned()).is_err());
    }

    #[test]
    fn max_entries_is_one_to_ten() {
        assert!(MaxEntries::try_from(0).is_err());
        assert!(MaxEntries::try_from(11).unwrap_err().contains("1 to 10"));
        assert_eq!(MaxEntries::try_from(10).unwrap().get(), 10);
    }

    #[test]
    fn batch_bytes_is_at_most_one_mebibyte() {
        assert!(BatchBytes::try_from(1_048_577).is_err());
        assert_eq!(BatchBytes::try_from(1_048_576).unwrap().get(), 1_048_576);
    }
}
