//! What a stub queue holds: the FIFO deduplication window, the sequence numbers, and (unless
//! told not to) the accepted messages in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

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

/// What the queue made of a message it was offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Admission {
    /// The message's id; for a duplicate, the id of the message it repeats, as SQS answers.
    pub message_id: Uuid,
    pub sequence_number: u64,
    /// FIFO deduplication dropped it: it is acknowledged, but not stored again.
    pub duplicate: bool,
}

#[derive(Default)]
pub(super) struct QueueState {
    /// Kept only while the stub keeps messages.
    pub messages: Vec<StoredMessage>,
    /// Messages admitted and not dropped as duplicates, kept or not.
    pub depth: usize,
    seen: HashMap<String, (Instant, Admission)>,
    next_sequence: u64,
}

impl QueueState {
    /// Admits a message with this deduplication id (FIFO queues only, `None` otherwise)
    /// unless the deduplication window already holds it.
    pub fn admit(&mut self, deduplication_id: Option<&str>) -> Admission {
        let now = Instant::now();
        if let Some(id) = deduplication_id {
            if let Some((seen_at, first)) = self.seen.get(id) {
                if now.duration_since(*seen_at) < DEDUPLICATION_WINDOW {
                    return Admission {
                        duplicate: true,
                        ..*first
                    };
                }
            }
        }
        self.next_sequence += 1;
        self.depth += 1;
        // From the thread's generator, seeded once: SQS's ids only need to be unique, and
        // the stub should not spend a system call a message on them.
        let admission = Admission {
            message_id: uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
            sequence_number: self.next_sequence,
            duplicate: false,
        };
        if let Some(id) = deduplication_id {
            self.seen.insert(id.to_owned(), (now, admission));
        }
        admission
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_deduplication_id_is_acknowledged_with_the_first_id_and_not_counted() {
        let mut queue = QueueState::default();
        let first = queue.admit(Some("t:0:1"));
        let other = queue.admit(Some("t:0:2"));
        let again = queue.admit(Some("t:0:1"));

        assert!(!first.duplicate && !other.duplicate);
        assert!(again.duplicate);
        assert_eq!(again.message_id, first.message_id);
        assert_eq!(again.sequence_number, first.sequence_number);
        assert_eq!(other.sequence_number, first.sequence_number + 1);
        assert_ne!(other.message_id, first.message_id);
        assert_eq!(queue.depth, 2);
    }

    #[test]
    fn without_deduplication_ids_every_message_counts() {
        let mut queue = QueueState::default();
        let first = queue.admit(None);
        let second = queue.admit(None);

        assert!(!first.duplicate && !second.duplicate);
        assert_eq!(second.sequence_number, 2);
        assert_eq!(queue.depth, 2);
        assert_eq!(first.message_id.get_version_num(), 4);
    }
}
