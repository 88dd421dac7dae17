//! One `SendMessageBatch` call and what it answered, entry by entry.

use std::time::{Duration, Instant};

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::errors::{FailureClass, classify_entry_error, classify_request_error};
use crate::message::OutgoingMessage;
use crate::message::attributes::AttributeValue;

/// Sends batches to one queue.
#[derive(Clone, Debug)]
pub struct BatchSender {
    client: aws_sdk_sqs::Client,
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
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Sends `messages` in one request; entry ids are the indexes in `messages`.
    pub async fn send(&self, messages: &[&OutgoingMessage]) -> Result<BatchReply, RequestFailure> {
        let entries: Vec<SendMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| entry(i, m))
            .collect();
        let started = Instant::now();
        let result = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let elapsed = started.elapsed();
        match result {
            Ok(output) => Ok(reply(
                messages.len(),
                output.successful(),
                output.failed(),
                elapsed,
            )),
            Err(error) => Err(request_failure(error, elapsed)),
        }
    }
}

fn entry(index: usize, message: &OutgoingMessage) -> SendMessageBatchRequestEntry {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body.clone())
        .set_message_group_id(message.group_id.clone())
        .set_message_deduplication_id(message.deduplication_id.clone());
    for attribute in &message.attributes {
        let value = match &attribute.value {
            AttributeValue::String(s) => MessageAttributeValue::builder()
                .data_type("String")
                .string_value(s.clone()),
            AttributeValue::Binary(b) => MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(b.to_vec())),
        };
        let value = value.build().expect("data type is always set");
        entry = entry.message_attributes(attribute.name.clone(), value);
    }
    entry.build().expect("id and body are always set")
}

fn reply(
    sent: usize,
    successful: &[aws_sdk_sqs::types::SendMessageBatchResultEntry],
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
    elapsed: Duration,
) -> BatchReply {
    let mut answered = vec![false; sent];
    let mut reply = BatchReply {
        elapsed,
        ..BatchReply::default()
    };
    for ok in successful {
        if let Some(index) = own_index(ok.id(), sent, &mut answered) {
            reply.succeeded.push(index);
        }
    }
    for failure in failed {
        if let Some(index) = own_index(failure.id(), sent, &mut answered) {
            reply.failed.push(EntryFailure {
                index,
                class: classify_entry_error(failure.code(), failure.sender_fault()),
                code: failure.code().to_owned(),
                message: failure.message().unwrap_or_default().to_owned(),
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
    reply
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

fn request_failure(
    error: SdkError<SendMessageBatchError, HttpResponse>,
    elapsed: Duration,
) -> RequestFailure {
    let (class, code, message) = match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            let status = service.raw().status().as_u16();
            let class = classify_request_error(code.as_deref(), Some(status));
            let message = service.err().message().unwrap_or_default().to_owned();
            (
                class,
                code.unwrap_or_else(|| format!("HTTP {status}")),
                message,
            )
        }
        SdkError::TimeoutError(_) => (
            FailureClass::Transient,
            "Timeout".to_owned(),
            "no answer in time".to_owned(),
        ),
        SdkError::DispatchFailure(failure) => (
            FailureClass::Transient,
            "DispatchFailure".to_owned(),
            format!("{failure:?}"),
        ),
        SdkError::ResponseError(_) => (
            FailureClass::Transient,
            "ResponseError".to_owned(),
            error_chain(&error),
        ),
        // The request could not even be built: credentials or endpoint trouble, which holds
        // for every record of this destination.
        _ => (
            FailureClass::Destination,
            "ConstructionFailure".to_owned(),
            error_chain(&error),
        ),
    };
    RequestFailure {
        class,
        code,
        message,
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
