//! Sending messages to one SQS queue: batches that respect SQS's limits, a scheduler that
//! keeps each message group's order while many batches are in flight, the window that says
//! how many may be, the client that sends them, what SQS's answers mean, and how long to wait
//! before trying again. Nothing here knows about Kafka.

pub mod client;
pub mod credentials;
pub mod errors;
pub mod in_flight_limit;
pub mod retry;
pub mod scheduler;
pub mod send;
