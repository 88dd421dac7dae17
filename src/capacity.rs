//! Giving back the room of queues that have drained. A `VecDeque` keeps the capacity of its
//! longest backlog; across a thousand message groups, whose backlogs come and go, that is
//! several times the memory of what is actually queued.

use std::collections::VecDeque;

/// Below this many slots a queue keeps its room: shrinking it would save little.
const KEEP_AT_LEAST: usize = 16;

/// Shrinks `queue` to twice its length once it fills less than a quarter of its capacity.
/// The gap between the two thresholds keeps a queue that hovers around one size from being
/// shrunk and grown over and over.
pub fn trim<E>(queue: &mut VecDeque<E>) {
    if queue.capacity() > KEEP_AT_LEAST && queue.len() < queue.capacity() / 4 {
        queue.shrink_to((queue.len() * 2).max(KEEP_AT_LEAST));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_queue_gives_back_its_room_and_keeps_its_order() {
        let mut queue: VecDeque<u32> = (0..1000).collect();
        queue.drain(..900);
        trim(&mut queue);
        assert!(queue.capacity() < 1000 / 4, "capacity {}", queue.capacity());
        assert!(queue.iter().copied().eq(900..1000));
    }

    #[test]
    fn a_queue_that_is_a_quarter_full_or_small_is_left_alone() {
        let mut quarter: VecDeque<u32> = VecDeque::with_capacity(1024);
        quarter.extend(0..256);
        let room = quarter.capacity();
        trim(&mut quarter);
        assert_eq!(quarter.capacity(), room);

        let mut small: VecDeque<u32> = VecDeque::with_capacity(16);
        small.push_back(1);
        trim(&mut small);
        assert!(small.capacity() >= 16);
    }
}
