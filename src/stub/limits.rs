//! SQS's rules for `SendMessageBatch` and `SendMessage`, written from the SQS API reference
//! independently of the bridge's own checks, so that the stub catches the bridge's mistakes
//! instead of sharing them.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use serde::Deserialize;

const MAX_ENTRIES: usize = 10;
const MAX_BYTES: usize = 1_048_576;
const MAX_ATTRIBUTES: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct BatchRequest {
    pub queue_url: String,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// One message to send, as a batch entry or as a whole `SendMessage` request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Entry {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub queue_url: String,
    #[serde(default)]
    pub message_body: String,
    pub message_group_id: Option<String>,
    pub message_deduplication_id: Option<String>,
    pub delay_seconds: Option<i64>,
    #[serde(default)]
    pub message_attributes: BTreeMap<String, Attribute>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Attribute {
    pub data_type: String,
    pub string_value: Option<String>,
    /// Base64, as the JSON protocol carries blobs.
    pub binary_value: Option<String>,
}

/// A refused request or entry: the error code, the awsQuery code the SDK reads from the
/// `x-amzn-query-error` header, and a message.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub code: &'static str,
    pub query_code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, query_code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        query_code,
        message: message.into(),
    }
}

impl Attribute {
    fn value_len(&self) -> Option<usize> {
        match (&self.string_value, &self.binary_value) {
            (Some(s), None) => Some(s.len()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .map(|v| v.len()),
            _ => None,
        }
    }
}

impl Entry {
    /// Bytes counted toward the limits: body, and each attribute's name, type and value.
    pub fn size(&self) -> usize {
        let attributes: usize = self
            .message_attributes
            .iter()
            .map(|(name, a)| name.len() + a.data_type.len() + a.value_len().unwrap_or(0))
            .sum();
        self.message_body.len() + attributes
    }
}

/// Rules on the request as a whole.
pub(super) fn check_batch(request: &BatchRequest) -> Result<(), Refusal> {
    let entries = &request.entries;
    if entries.is_empty() {
        return Err(refuse(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "no entries",
        ));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(refuse(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("{} entries; the maximum is {MAX_ENTRIES}", entries.len()),
        ));
    }
    let mut ids = HashSet::new();
    for entry in entries {
        let id_ok = !entry.id.is_empty()
            && entry.id.len() <= 80
            && entry
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(refuse(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                format!("entry id {:?} is invalid", entry.id),
            ));
        }
        if !ids.insert(entry.id.as_str()) {
            return Err(refuse(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("entry id {:?} is repeated", entry.id),
            ));
        }
    }
    let total: usize = entries.iter().map(Entry::size).sum();
    if total > MAX_BYTES {
        return Err(refuse(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!("the batch is {total} bytes; the maximum is {MAX_BYTES}"),
        ));
    }
    Ok(())
}

/// Rules on one message; a refusal is reported for the entry, as a sender fault.
pub(super) fn check_entry(entry: &Entry, fifo: bool) -> Result<(), Refusal> {
    let invalid =
        |message: String| refuse("InvalidParameterValue", "InvalidParameterValue", message);
    if entry.message_body.is_empty() {
        return Err(refuse(
            "MissingParameter",
            "MissingParameter",
            "the message body is empty",
        ));
    }
    if let Some(c) = first_refused_character(&entry.message_body) {
        return Err(refuse(
            "InvalidMessageContents",
            "InvalidMessageContents",
            format!(
                "invalid character U+{:04X} in the message body",
                u32::from(c)
            ),
        ));
    }
    if entry.size() > MAX_BYTES {
        return Err(invalid(format!(
            "the message is {} bytes; the maximum is {MAX_BYTES}",
            entry.size()
        )));
    }
    if entry.message_attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(format!(
            "{} message attributes; the maximum is {MAX_ATTRIBUTES}",
            entry.message_attributes.len()
        )));
    }
    for (name, attribute) in &entry.message_attributes {
        check_attribute(name, attribute).map_err(invalid)?;
    }
    match (
        fifo,
        &entry.message_group_id,
        &entry.message_deduplication_id,
    ) {
        (true, None, _) => {
            return Err(refuse(
                "MissingParameter",
                "MissingParameter",
                "FIFO messages need a MessageGroupId",
            ));
        }
        (true, _, None) => {
            return Err(invalid("the queue has no content-based deduplication: a MessageDeduplicationId is required".into()));
        }
        (false, _, Some(_)) => {
            return Err(invalid(
                "MessageDeduplicationId is only valid for FIFO queues".into(),
            ));
        }
        _ => {}
    }
    for (what, id) in [
        ("MessageGroupId", &entry.message_group_id),
        ("MessageDeduplicationId", &entry.message_deduplication_id),
    ] {
        if let Some(id) = id {
            if !valid_fifo_id(id) {
                return Err(invalid(format!(
                    "{what} {id:?} is not 1 to 128 allowed characters"
                )));
            }
        }
    }
    if fifo && entry.delay_seconds.is_some_and(|d| d != 0) {
        return Err(invalid(
            "FIFO queues take no per-message DelaySeconds".into(),
        ));
    }
    Ok(())
}

/// The first character SQS refuses in a body. Printable ASCII, tab and line ends are all
/// allowed, so a body made only of those needs no decoding.
fn first_refused_character(body: &str) -> Option<char> {
    let plain = |b: &u8| matches!(b, b'\t' | b'\n' | b'\r' | 0x20..=0x7E);
    if body.as_bytes().iter().all(plain) {
        return None;
    }
    body.chars().find(|c| !allowed_in_body(*c))
}

/// `#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF`.
fn allowed_in_body(c: char) -> bool {
    matches!(u32::from(c), 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Alphanumerics and ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``, 1 to 128 of them.
/// Those are exactly ASCII's graphic characters, `!` to `~`.
fn valid_fifo_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn check_attribute(name: &str, attribute: &Attribute) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    let name_ok = (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if !name_ok {
        return Err(format!("message attribute name {name:?} is invalid"));
    }
    let known_type = ["String", "Number", "Binary"]
        .iter()
        .any(|t| attribute.data_type.starts_with(t));
    if !known_type {
        return Err(format!(
            "message attribute {name:?} has data type {:?}",
            attribute.data_type
        ));
    }
    match attribute.value_len() {
        Some(0) | None => Err(format!("message attribute {name:?} has no value")),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_refused_at_their_first_character_outside_sqs_ranges() {
        assert_eq!(first_refused_character("{\"t\": 1}\r\n\t"), None);
        assert_eq!(
            first_refused_character("caf\u{e9} \u{1F600} \u{FFFD}"),
            None
        );
        assert_eq!(first_refused_character("ok\u{1}no\u{2}"), Some('\u{1}'));
        assert_eq!(
            first_refused_character("caf\u{e9}\u{FFFE}"),
            Some('\u{FFFE}')
        );
        assert_eq!(first_refused_character("\u{7F}"), None);
    }

    #[test]
    fn fifo_ids_are_one_to_128_graphic_ascii_characters() {
        assert!(valid_fifo_id("device-7:topic/0@12"));
        assert!(valid_fifo_id("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
        assert!(valid_fifo_id(&"a".repeat(128)));
        assert!(!valid_fifo_id(&"a".repeat(129)));
        assert!(!valid_fifo_id(""));
        assert!(!valid_fifo_id("with space"));
        assert!(!valid_fifo_id("caf\u{e9}"));
    }
}
