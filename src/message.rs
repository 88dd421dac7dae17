//! From a Kafka record to an SQS message for one destination: group id, deduplication id,
//! body and attributes, within SQS's limits. Nothing here knows about the SQS client.

pub mod attributes;
pub mod body;
pub mod ids;
pub mod select;

use std::fmt;

use bytestring::ByteString;

use attributes::{Attribute, AttributeValue, DroppedHeader, headers_to_attributes};
use body::{Body, ENCODING_ATTRIBUTE, envelope_body, raw_body};
use ids::{into_sqs_id, push_decimal, sqs_id};
use select::{Payload, describe_source, read_source};

use crate::config::{
    BodyFormat, DeduplicationIdSource, DestinationConfig, EmptyValuePolicy, GroupIdSource,
    MessageConfig, ValueSource,
};
use crate::record::Record;

/// A message ready to be put in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: ByteString,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub attributes: Vec<Attribute>,
}

impl OutgoingMessage {
    /// Bytes that count toward SQS's message and request limits: body and attributes.
    pub fn size(&self) -> usize {
        self.body.len() + self.attributes_size()
    }

    /// Bytes of the attributes alone: names, types and values.
    pub fn attributes_size(&self) -> usize {
        self.attributes.iter().map(Attribute::size).sum()
    }
}

/// What becomes of a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Send this message; the headers left out of its attributes are listed.
    Send {
        message: OutgoingMessage,
        dropped_headers: Vec<DroppedHeader>,
    },
    /// Nothing is sent, by configuration; the record is done.
    Skip(SkipReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A tombstone or an empty value, which SQS cannot carry as a body.
    EmptyValue,
}

impl SkipReason {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::EmptyValue => "empty_value",
        }
    }
}

/// A record that can never become a message for this destination.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    #[error("the message would be {size} bytes, over this destination's limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("no message group id: {0} is missing or empty")]
    MissingGroupId(String),
    #[error("no deduplication id: {0} is missing or empty")]
    MissingDeduplicationId(String),
    /// SQS itself refused the message, as a fault of its content.
    #[error("SQS refused the message: {code}: {message}")]
    Refused { code: String, message: String },
}

impl Unsendable {
    /// A bounded metric label and dead-letter reason.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::MissingGroupId(_) => "missing_group_id",
            Self::MissingDeduplicationId(_) => "missing_deduplication_id",
            Self::Refused { .. } => "refused_by_sqs",
        }
    }
}

/// Maps records to messages as one destination's configuration says.
pub struct MessageMapper {
    fifo: bool,
    group_id: Option<GroupIdSource>,
    deduplication_id: Option<DeduplicationIdSource>,
    format: BodyFormat,
    empty_values: EmptyValuePolicy,
    headers_as_attributes: bool,
    max_message_bytes: usize,
}

impl MessageMapper {
    pub fn new(destination: &DestinationConfig) -> Self {
        let fifo = destination.queue_url.is_fifo();
        let MessageConfig {
            group_id,
            deduplication_id,
            format,
            empty_values,
            headers_as_attributes,
        } = destination.message.clone();
        Self {
            fifo,
            group_id: if fifo {
                Some(group_id.unwrap_or_default())
            } else {
                group_id
            },
            deduplication_id: if fifo {
                Some(deduplication_id.unwrap_or_default())
            } else {
                None
            },
            format,
            empty_values,
            headers_as_attributes,
            // A message that does not fit a batch of this destination can never be sent.
            max_message_bytes: destination.batch.max_batch_bytes.get(),
        }
    }

    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The message for `record`, or why there is none.
    pub fn map(&self, record: &Record, payload: &Payload<'_>) -> Result<Mapping, Unsendable> {
        let empty = record.value.as_ref().is_none_or(|v| v.is_empty());
        if empty && self.empty_values == EmptyValuePolicy::Skip {
            return Ok(Mapping::Skip(SkipReason::EmptyValue));
        }

        let group_id = match &self.group_id {
            Some(source) => Some(self.group_id_of(source, record, payload)?),
            None => None,
        };
        let deduplication_id = match &self.deduplication_id {
            Some(source) => self.deduplication_id_of(source, record, payload)?,
            None => None,
        };

        let Body { text, base64 } = match (self.format, &record.value) {
            (BodyFormat::Raw, Some(value)) if !value.is_empty() => raw_body(value),
            _ => envelope_body(record),
        };
        let mut own = Vec::new();
        if base64 {
            let value = AttributeValue::String("base64".to_owned());
            own.push(Attribute {
                name: ENCODING_ATTRIBUTE.to_owned(),
                value,
            });
        }
        let (mut from_headers, mut dropped_headers) = if self.headers_as_attributes {
            headers_to_attributes(&record.headers, own.len(), &[ENCODING_ATTRIBUTE])
        } else {
            (Vec::new(), Vec::new())
        };

        let own_size = text.len() + own.iter().map(Attribute::size).sum::<usize>();
        let size = own_size + from_headers.iter().map(Attribute::size).sum::<usize>();
        if own_size > self.max_message_bytes {
            return Err(Unsendable::TooLarge {
                size,
                limit: self.max_message_bytes,
            });
        }
        if size > self.max_message_bytes {
            // The body fits on its own: the record matters more than its headers.
            dropped_headers.extend(
                from_headers
                    .drain(..)
                    .map(|_| DroppedHeader::MessageTooLarge),
            );
        }
        own.append(&mut from_headers);

        let message = OutgoingMessage {
            body: text,
            group_id,
            deduplication_id,
            attributes: own,
        };
        Ok(Mapping::Send {
            message,
            dropped_headers,
        })
    }

    fn group_id_of(
        &self,
        source: &GroupIdSource,
        record: &Record,
        payload: &Payload<'_>,
    ) -> Result<String, Unsendable> {
        let value_source = match source {
            GroupIdSource::Key => ValueSource::Key,
            GroupIdSource::Partition => return Ok(partition_group(record)),
            GroupIdSource::Header(name) => ValueSource::Header(name.clone()),
            GroupIdSource::JsonPointer(pointer) => ValueSource::JsonPointer(pointer.clone()),
        };
        match read_source(&value_source, record, payload) {
            Some(raw) => Ok(sqs_id(&raw)),
            // A keyless record keeps the order of its partition.
            None if value_source == ValueSource::Key => Ok(partition_group(record)),
            None => Err(Unsendable::MissingGroupId(describe_source(&value_source))),
        }
    }

    fn deduplication_id_of(
        &self,
        source: &DeduplicationIdSource,
        record: &Record,
        payload: &Payload<'_>,
    ) -> Result<Option<String>, Unsendable> {
        let value_source = match source {
            DeduplicationIdSource::TopicPartitionOffset => {
                return Ok(Some(coordinates_id(record)));
            }
            DeduplicationIdSource::ContentBased => return Ok(None),
            DeduplicationIdSource::Key => ValueSource::Key,
            DeduplicationIdSource::Header(name) => ValueSource::Header(name.clone()),
            DeduplicationIdSource::JsonPointer(pointer) => {
                ValueSource::JsonPointer(pointer.clone())
            }
        };
        match read_source(&value_source, record, payload) {
            Some(raw) => Ok(Some(sqs_id(&raw))),
            None => Err(Unsendable::MissingDeduplicationId(describe_source(
                &value_source,
            ))),
        }
    }
}

/// `topic:partition:offset`, built without the formatting machinery: it runs once a record.
fn coordinates_id(record: &Record) -> String {
    let mut id = String::with_capacity(record.topic.len() + 2 + 10 + 20);
    id.push_str(&record.topic);
    id.push(':');
    push_decimal(&mut id, i64::from(record.partition));
    id.push(':');
    push_decimal(&mut id, record.offset);
    into_sqs_id(id)
}

/// The group of records that have no key of their own: one per partition.
fn partition_group(record: &Record) -> String {
    sqs_id(format!("kafka-partition:{}:{}", record.topic, record.partition).as_bytes())
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

#[cfg(test)]
mod tests;
