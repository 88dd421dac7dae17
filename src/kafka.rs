//! Reading records from Kafka: the consumer and its rebalance handling, and the offset
//! watermark that decides what may be committed.

pub mod consumer;
pub mod progress;
