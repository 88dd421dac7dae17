//! kafka-sqs-bridge: streams Kafka records into Amazon SQS queues.
//!
//! The story of a record, one module per step:
//! [`kafka`] reads it and tracks which offsets may be committed, [`message`] turns it into an
//! SQS message for one destination, [`sqs`] batches and sends it and classifies what SQS
//! answered, and [`pipeline`] wires those together for each destination, with backpressure,
//! retries and poison-record handling. [`config`] loads and validates what the operator wrote;
//! [`metrics`] and [`admin`] let the outside world watch.

#![forbid(unsafe_code)]

pub mod admin;
pub mod capacity;
pub mod config;
pub mod connect;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod shutdown;
pub mod sqs;
#[cfg(feature = "sqs-stub")]
pub mod stub;
