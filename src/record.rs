//! The bridge's own copy of a Kafka record, detached from the client library, so that the
//! message mapping and the tests do not depend on librdkafka.

use std::sync::Arc;

use bytes::Bytes;

/// One Kafka record as read from a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, as the producer or the broker stamped it.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A Kafka header. Kafka allows repeated names and null values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

impl Record {
    /// Bytes held in memory for this record, the unit of the backpressure budget.
    pub fn buffered_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
            + std::mem::size_of::<Self>()
    }

    /// The first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// `topic/partition@offset`, for log lines and error messages.
    pub fn coordinates(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}
