//! One `SendMessageBatch` call and what it answered, entry by entry. The request is written
//! straight from the bridge's messages, and the answer read with borrowed strings: per record,
//! only the body's JSON escaping and one id are produced.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::client::{Answer, CallError, SqsClient};
use super::errors::{FailureClass, classify_entry_error, classify_request_error};
use crate::message::OutgoingMessage;
use crate::message::attributes::{Attribute, AttributeValue};

/// Sends batches to one queue.
#[derive(Clone, Debug)]
pub struct BatchSender {
    client: SqsClient,
    queue_url: String,
}

/// The answer to a request that SQS accepted: which entries, by index, it took.
#[derive(Debug, Default)]
pub struct BatchReply {
    pub succeeded: Vec<usize>,
    pub failed: Vec<EntryFailure>,
    pub elapsed: Duration,
}

/// An entry SQS did not take.
#[derive(Clone, Debug)]
pub struct EntryFailure {
    pub index: usize,
    pub class: FailureClass,
    pub code: String,
    pub message: String,
}

/// A request that failed as a whole.
#[derive(Clone, Debug, thiserror::Error)]
#[error("SendMessageBatch failed ({}): {code}: {message}", class.as_label())]
pub struct RequestFailure {
    pub class: FailureClass,
    pub code: String,
    pub message: String,
    pub elapsed: Duration,
}

impl BatchSender {
    pub fn new(client: SqsClient, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Sends `messages` in one request; entry ids are the indexes in `messages`.
    pub async fn send(&self, messages: &[&OutgoingMessage]) -> Result<BatchReply, RequestFailure> {
        let started = Instant::now();
        let request = BatchRequest {
            queue_url: &self.queue_url,
            entries: messages,
        };
        let mut body = Vec::with_capacity(request.estimated_len());
        serde_json::to_writer(&mut body, &request).map_err(|e| RequestFailure {
            class: FailureClass::Request,
            code: "SerializationError".to_owned(),
            message: e.to_string(),
            elapsed: started.elapsed(),
        })?;
        let answer = self.client.call("SendMessageBatch", body).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(answer) if answer.status.is_success() => read_reply(messages.len(), &answer.body)
                .map(|reply| BatchReply { elapsed, ..reply })
                .map_err(|message| RequestFailure {
                    class: FailureClass::Transient,
                    code: "ResponseError".to_owned(),
                    message,
                    elapsed,
                }),
            Ok(answer) => Err(refusal(&answer, elapsed)),
            Err(error) => Err(unanswered(error, elapsed)),
        }
    }
}

/// The request document: `{"QueueUrl": …, "Entries": [{"Id": "0", …}, …]}`.
struct BatchRequest<'a> {
    queue_url: &'a str,
    entries: &'a [&'a OutgoingMessage],
}

impl BatchRequest<'_> {
    /// About the length of the document, so that writing it seldom grows the buffer: each
    /// growth copies what was written, and a batch of ten would otherwise grow it ten times.
    fn estimated_len(&self) -> usize {
        let entries: usize = self
            .entries
            .iter()
            .map(|m| {
                let ids = m.group_id.as_ref().map_or(0, String::len)
                    + m.deduplication_id.as_ref().map_or(0, String::len);
                // A JSON body escapes its quotes; names and punctuation add the rest.
                m.size() + m.body.len() / 4 + ids + 128
            })
            .sum();
        self.queue_url.len() + entries + 64
    }
}

impl Serialize for BatchRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("QueueUrl", self.queue_url)?;
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, message)| Entry { index, message })
            .collect();
        map.serialize_entry("Entries", &entries)?;
        map.end()
    }
}

struct Entry<'a> {
    index: usize,
    message: &'a OutgoingMessage,
}

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.message;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("Id", &Index(self.index))?;
        map.serialize_entry("MessageBody", &m.body)?;
        if let Some(group) = &m.group_id {
            map.serialize_entry("MessageGroupId", group)?;
        }
        if let Some(deduplication) = &m.deduplication_id {
            map.serialize_entry("MessageDeduplicationId", deduplication)?;
        }
        if !m.attributes.is_empty() {
            map.serialize_entry("MessageAttributes", &Attributes(&m.attributes))?;
        }
        map.end()
    }
}

/// An entry id: the entry's index, as a string.
struct Index(usize);

impl Serialize for Index {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A batch has at most ten entries; their ids are written without formatting.
        const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        match IDS.get(self.0) {
            Some(id) => serializer.serialize_str(id),
            None => serializer.collect_str(&self.0),
        }
    }
}

/// `{"name": {"DataType": "String", "StringValue": …}, …}`; binary values in base64.
struct Attributes<'a>(&'a [Attribute]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Value<'a> {
            data_type: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            string_value: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            binary_value: Option<String>,
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for attribute in self.0 {
            let data_type = attribute.value.data_type();
            let value = match &attribute.value {
                AttributeValue::String(text) => Value {
                    data_type,
                    string_value: Some(text),
                    binary_value: None,
                },
                AttributeValue::Binary(bytes) => Value {
                    data_type,
                    string_value: None,
                    binary_value: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                },
            };
            map.serialize_entry(&attribute.name, &value)?;
        }
        map.end()
    }
}

/// The reply document: `{"Successful": [{"Id": …}], "Failed": [{"Id": …, "Code": …}]}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResult<'a> {
    #[serde(default, borrow)]
    successful: Option<Vec<Answered<'a>>>,
    #[serde(default, borrow)]
    failed: Option<Vec<Failed<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answered<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failed<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    sender_fault: bool,
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// The entries of a request of `sent` entries that `body` says were taken or refused.
fn read_reply(sent: usize, body: &[u8]) -> Result<BatchReply, String> {
    let result: BatchResult<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("the SendMessageBatch reply is not what SQS sends: {e}"))?;
    let mut answered = vec![false; sent];
    let mut reply = BatchReply::default();
    for ok in result.successful.unwrap_or_default() {
        if let Some(index) = own_index(&ok.id, sent, &mut answered) {
            reply.succeeded.push(index);
        }
    }
    for failure in result.failed.unwrap_or_default() {
        if let Some(index) = own_index(&failure.id, sent, &mut answered) {
            reply.failed.push(EntryFailure {
                index,
                class: classify_entry_error(&failure.code, failure.sender_fault),
                code: failure.code.into_owned(),
                message: failure.message.map(Cow::into_owned).unwrap_or_default(),
            });
        }
    }
    // An entry SQS said nothing about was not taken: send it again.
    for (index, _) in answered.iter().enumerate().filter(|(_, seen)| !**seen) {
        reply.failed.push(EntryFailure {
            index,
            class: FailureClass::Transient,
            code: "NoAnswer".to_owned(),
            message: "the reply did not mention this entry".to_owned(),
        });
    }
    reply.succeeded.sort_unstable();
    reply.failed.sort_unstable_by_key(|f| f.index);
    Ok(reply)
}

/// The index an entry id stands for, once; an unknown or repeated id is ignored.
fn own_index(id: &str, sent: usize, answered: &mut [bool]) -> Option<usize> {
    let index = id.parse::<usize>().ok().filter(|i| *i < sent)?;
    if std::mem::replace(&mut answered[index], true) {
        None
    } else {
        Some(index)
    }
}

/// A request SQS refused as a whole. The code is the awsQuery one when SQS sends it, as the
/// SDK reports it, else the JSON body's `__type` without its namespace.
fn refusal(answer: &Answer, elapsed: Duration) -> RequestFailure {
    #[derive(Deserialize, Default)]
    struct ErrorBody<'a> {
        #[serde(default, borrow, rename = "__type", alias = "code")]
        kind: Option<Cow<'a, str>>,
        #[serde(default, borrow, alias = "Message")]
        message: Option<Cow<'a, str>>,
    }
    let parsed: ErrorBody<'_> = serde_json::from_slice(&answer.body).unwrap_or_default();
    let type_code = parsed.kind.as_deref().map(|kind| {
        let without_namespace = kind.rsplit('#').next().unwrap_or(kind);
        without_namespace
            .split(':')
            .next()
            .unwrap_or(without_namespace)
    });
    let code = answer
        .query_error
        .as_deref()
        .or(type_code)
        .filter(|code| !code.is_empty());
    let status = answer.status.as_u16();
    let message = match parsed.message {
        Some(message) => message.into_owned(),
        // Not SQS's JSON, perhaps a proxy's page: its start says most.
        None => String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned(),
    };
    RequestFailure {
        class: classify_request_error(code, Some(status)),
        code: code.map_or_else(|| format!("HTTP {status}"), str::to_owned),
        message,
        elapsed,
    }
}

/// A request that got no answer. Missing credentials hold for every record of the
/// destination; the rest may clear up on the next attempt.
fn unanswered(error: CallError, elapsed: Duration) -> RequestFailure {
    let (class, code) = match &error {
        CallError::Credentials(_) => (FailureClass::Destination, "CredentialsUnavailable"),
        CallError::Signing(_) => (FailureClass::Destination, "SigningFailure"),
        CallError::Timeout(_) => (FailureClass::Transient, "Timeout"),
        CallError::Connection(_) => (FailureClass::Transient, "DispatchFailure"),
        CallError::Body(_) => (FailureClass::Transient, "ResponseError"),
    };
    RequestFailure {
        class,
        code: code.to_owned(),
        message: error.to_string(),
        elapsed,
    }
}

/// An error and its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;
    use serde_json::{Value, json};

    use super::*;

    fn message(body: &str, group: Option<&str>) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            group_id: group.map(str::to_owned),
            deduplication_id: group.map(|g| format!("{g}-dedup")),
            attributes: Vec::new(),
        }
    }

    #[test]
    fn the_request_carries_every_field_the_sdk_would_send() {
        let mut with_attributes = message("{\"t\":\"caf\u{e9}\\n\"}", Some("device-7"));
        with_attributes.attributes = vec![
            Attribute {
                name: "kafka.topic".to_owned(),
                value: AttributeValue::String("records".to_owned()),
            },
            Attribute {
                name: "kafka.key".to_owned(),
                value: AttributeValue::Binary(Bytes::from_static(&[0, 255])),
            },
        ];
        let plain = message("plain", None);
        let request = BatchRequest {
            queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo",
            entries: &[&with_attributes, &plain],
        };
        let written: Value = serde_json::to_value(&request).unwrap();
        assert_eq!(
            written,
            json!({
                "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo",
                "Entries": [
                    {
                        "Id": "0",
                        "MessageBody": "{\"t\":\"caf\u{e9}\\n\"}",
                        "MessageGroupId": "device-7",
                        "MessageDeduplicationId": "device-7-dedup",
                        "MessageAttributes": {
                            "kafka.topic": {"DataType": "String", "StringValue": "records"},
                            "kafka.key": {"DataType": "Binary", "BinaryValue": "AP8="},
                        },
                    },
                    {"Id": "1", "MessageBody": "plain"},
                ],
            })
        );
    }

    #[test]
    fn the_estimate_holds_a_batch_of_json_records() {
        let body = format!(
            "{{\"device\":\"70-B3-D5-32-6B-00-08-8E\",\"temperature\":21.5,\"pad\":\"{}\"}}",
            "x".repeat(190)
        );
        let messages: Vec<OutgoingMessage> = (0..10)
            .map(|i| message(&body, Some(&format!("device-{i}"))))
            .collect();
        let entries: Vec<&OutgoingMessage> = messages.iter().collect();
        let request = BatchRequest {
            queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo",
            entries: &entries,
        };
        let written = serde_json::to_vec(&request).unwrap();
        assert!(
            request.estimated_len() >= written.len(),
            "estimated {} for {} bytes",
            request.estimated_len(),
            written.len()
        );
    }

    #[test]
    fn a_reply_is_read_entry_by_entry_and_silence_means_send_again() {
        let body = br#"{
            "Successful": [
                {"Id": "2", "MessageId": "m-2", "MD5OfMessageBody": "x"},
                {"Id": "2", "MessageId": "again"},
                {"Id": "9", "MessageId": "not ours"}
            ],
            "Failed": [
                {"Id": "0", "SenderFault": true, "Code": "InvalidMessageContents",
                 "Message": "invalid character"},
                {"Id": "1", "SenderFault": false, "Code": "InternalError"}
            ]
        }"#;
        let reply = read_reply(4, body).unwrap();
        assert_eq!(reply.succeeded, vec![2]);
        let failed: Vec<(usize, FailureClass, &str)> = reply
            .failed
            .iter()
            .map(|f| (f.index, f.class, f.code.as_str()))
            .collect();
        assert_eq!(
            failed,
            vec![
                (0, FailureClass::Record, "InvalidMessageContents"),
                (1, FailureClass::Transient, "InternalError"),
                (3, FailureClass::Transient, "NoAnswer"),
            ]
        );
        assert_eq!(reply.failed[0].message, "invalid character");
        assert!(read_reply(1, b"<html>").is_err());
    }

    fn answer(status: u16, query_error: Option<&str>, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            query_error: query_error.map(str::to_owned),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_refusal_is_named_by_its_query_code_or_its_type() {
        let elapsed = Duration::ZERO;
        let missing = answer(
            400,
            Some("AWS.SimpleQueueService.NonExistentQueue"),
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no such queue"}"#,
        );
        let failure = refusal(&missing, elapsed);
        assert_eq!(failure.code, "AWS.SimpleQueueService.NonExistentQueue");
        assert_eq!(failure.class, FailureClass::Destination);
        assert_eq!(failure.message, "no such queue");

        let throttled = answer(
            400,
            None,
            r#"{"__type":"com.amazonaws.sqs#RequestThrottled:http://x","Message":"slow"}"#,
        );
        let failure = refusal(&throttled, elapsed);
        assert_eq!(failure.code, "RequestThrottled");
        assert_eq!(failure.class, FailureClass::Transient);
        assert_eq!(failure.message, "slow");

        let proxy = answer(502, None, "<html>Bad Gateway</html>");
        let failure = refusal(&proxy, elapsed);
        assert_eq!(failure.code, "HTTP 502");
        assert_eq!(failure.class, FailureClass::Transient);
        assert_eq!(failure.message, "<html>Bad Gateway</html>");
    }
}
