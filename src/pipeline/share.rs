//! Each partition's share of the byte budget. Over the budget the loop stops reading, and
//! librdkafka's one consumer queue stays full. Room in it then goes to whichever partition
//! librdkafka fetches first, and in a drain at a 20 ms round trip the same partition kept
//! winning: its records filled the whole budget for twenty seconds at a time. A message
//! group has one batch in flight at a time, so the drain ran at the pace of that
//! partition's twelfth of the groups, 3,500 records/s instead of 40,000.
//!
//! So when the budget is full and its records cannot fill a batch (their groups are all in
//! flight), each partition holding more than an even share is paused. That also drops what
//! librdkafka had fetched of it, and the queue fills with the other partitions. It is resumed
//! as soon as it holds no more than an even share: resuming lower paused ten times less,
//! but the partitions ran dry before librdkafka fetched them again. For the same reason a
//! share is never taken as less than [`MIN_SHARE`]: with a budget of a dozen records, a
//! partition back to its share had nothing left to send while it was fetched again, and
//! pausing made a drain three times slower. When SQS is fast the groups are seldom short,
//! and a drain pauses a few times or not at all.

use std::collections::{HashMap, HashSet};

use crate::kafka::progress::PartitionKey;

/// Bytes held per partition, and the partitions paused for holding too many.
#[derive(Debug, Default)]
pub struct PartitionShares {
    shares: HashMap<PartitionKey, Share>,
    held: usize,
}

#[derive(Debug, Default)]
struct Share {
    bytes: usize,
    held: bool,
}

impl PartitionShares {
    pub fn add(&mut self, key: &PartitionKey, bytes: usize) {
        match self.shares.get_mut(key) {
            Some(share) => share.bytes += bytes,
            None => {
                let share = Share { bytes, held: false };
                self.shares.insert(key.clone(), share);
            }
        }
    }

    pub fn remove(&mut self, key: &PartitionKey, bytes: usize) {
        if let Some(share) = self.shares.get_mut(key) {
            share.bytes = share.bytes.saturating_sub(bytes);
        }
    }

    /// Partitions not yet held that hold more than an even share of `budget` among
    /// `partitions`, and more than [`MIN_SHARE`]. A lone partition has no one to make room
    /// for.
    pub fn over_share(&self, budget: usize, partitions: usize) -> Vec<PartitionKey> {
        if partitions <= 1 {
            return Vec::new();
        }
        let limit = even_share(budget, partitions);
        self.shares
            .iter()
            .filter(|(_, share)| !share.held && share.bytes > limit)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Held partitions that are back to an even share or below.
    pub fn back_to_share(&self, budget: usize, partitions: usize) -> Vec<PartitionKey> {
        if self.held == 0 {
            return Vec::new();
        }
        let limit = even_share(budget, partitions);
        self.shares
            .iter()
            .filter(|(_, share)| share.held && share.bytes <= limit)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn hold(&mut self, key: PartitionKey) {
        let share = self.shares.entry(key).or_default();
        if !share.held {
            share.held = true;
            self.held += 1;
        }
    }

    pub fn release(&mut self, key: &PartitionKey) {
        if let Some(share) = self.shares.get_mut(key) {
            if share.held {
                share.held = false;
                self.held -= 1;
            }
        }
    }

    /// Forgets which partitions are held, once they have all been resumed together.
    pub fn release_all(&mut self) {
        self.shares
            .values_mut()
            .for_each(|share| share.held = false);
        self.held = 0;
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn is_held(&self, key: &PartitionKey) -> bool {
        self.shares.get(key).is_some_and(|share| share.held)
    }

    /// Forgets the partitions that are no longer owned.
    pub fn retain(&mut self, owned: &[PartitionKey]) {
        let owned: HashSet<&PartitionKey> = owned.iter().collect();
        self.shares.retain(|key, _| owned.contains(key));
        self.held = self.shares.values().filter(|share| share.held).count();
    }
}

/// The least a partition may hold before it is paused for its share: enough 256-byte
/// records (with their messages, ~1,600 of them) to keep its groups busy while librdkafka
/// fetches it again after the resume.
pub const MIN_SHARE: usize = 1024 * 1024;

fn even_share(budget: usize, partitions: usize) -> usize {
    (budget / partitions.max(1)).max(MIN_SHARE)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A hundredth of the least share, so that the figures below read as in units.
    const K: usize = MIN_SHARE / 100;

    fn partition(partition: i32) -> PartitionKey {
        PartitionKey {
            topic: Arc::from("records"),
            partition,
        }
    }

    #[test]
    fn a_partition_over_an_even_share_is_held_until_back_to_it() {
        let mut shares = PartitionShares::default();
        // A budget of 1,200 units over 4 partitions: an even share is 300.
        shares.add(&partition(0), 700 * K);
        shares.add(&partition(1), 300 * K);
        shares.add(&partition(2), 100 * K);
        assert_eq!(shares.over_share(1200 * K, 4), vec![partition(0)]);

        shares.hold(partition(0));
        assert!(shares.over_share(1200 * K, 4).is_empty(), "held once only");
        assert_eq!(shares.held(), 1);

        shares.remove(&partition(0), 350 * K);
        assert!(
            shares.back_to_share(1200 * K, 4).is_empty(),
            "350 is over a share"
        );
        shares.remove(&partition(0), 50 * K);
        assert_eq!(shares.back_to_share(1200 * K, 4), vec![partition(0)]);

        shares.release(&partition(0));
        assert_eq!(shares.held(), 0);
    }

    #[test]
    fn a_lone_partition_is_never_held() {
        let mut shares = PartitionShares::default();
        shares.add(&partition(0), 1500 * K);
        assert!(shares.over_share(1000 * K, 1).is_empty());
        assert_eq!(shares.over_share(1000 * K, 2), vec![partition(0)]);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut shares = PartitionShares::default();
        shares.add(&partition(0), 900 * K);
        shares.add(&partition(1), 900 * K);
        shares.hold(partition(0));
        shares.hold(partition(1));

        shares.retain(&[partition(1)]);
        assert_eq!(shares.held(), 1);
        assert!(!shares.is_held(&partition(0)) && shares.is_held(&partition(1)));
        // A batch of the revoked partition that settles late finds nothing to take from.
        shares.remove(&partition(0), 900 * K);
        shares.add(&partition(0), 10 * K);
        // Partition 1 is held already, and partition 0 holds only its new 10 bytes.
        assert!(shares.over_share(100 * K, 2).is_empty());

        shares.release_all();
        assert_eq!(shares.held(), 0);
        assert_eq!(shares.over_share(100 * K, 2), vec![partition(1)]);
    }

    #[test]
    fn a_share_is_never_less_than_the_minimum() {
        let mut shares = PartitionShares::default();
        shares.add(&partition(0), MIN_SHARE);
        shares.add(&partition(1), MIN_SHARE + 1);
        // A budget of 8 KiB over 6 partitions would be 1,365 bytes each.
        assert_eq!(shares.over_share(8192, 6), vec![partition(1)]);
    }
}
