//! What a stub queue holds: accepted messages in order, and the FIFO deduplication window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// SQS drops a FIFO message whose deduplication id it saw in the last five minutes.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(300);

/// One accepted message.
#[derive(Clone, Debug, Serialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    /// Attribute name, data type and value (binary values base64-encoded).
    pub attributes: Vec<(String, String, String)>,
    /// Strictly increasing per queue, like SQS's FIFO sequence numbers.
    pub sequence_number: u64,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub accepted_at_ms: u64,
}

#[derive(Default)]
pub(super) struct QueueState {
    pub messages: Vec<StoredMessage>,
    seen: HashMap<String, (Instant, String)>,
    next_sequence: u64,
}

impl QueueState {
    /// Stores `message` unless FIFO deduplication drops it; returns its message id (the first
    /// one's when dropped) and whether it was stored.
    pub fn accept(&mut self, mut message: StoredMessage, fifo: bool) -> (String, bool) {
        let now = Instant::now();
        if fifo {
            let id = message
                .deduplication_id
                .clone()
                .expect("FIFO messages are validated");
            if let Some((seen_at, message_id)) = self.seen.get(&id) {
                if now.duration_since(*seen_at) < DEDUPLICATION_WINDOW {
                    return (message_id.clone(), false);
                }
            }
            self.seen.insert(id, (now, message.message_id.clone()));
        }
        self.next_sequence += 1;
        message.sequence_number = self.next_sequence;
        let id = message.message_id.clone();
        self.messages.push(message);
        (id, true)
    }
}
