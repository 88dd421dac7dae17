//! Which offsets of each owned partition may be committed. A record is registered when it is
//! read and completed when every way out of the bridge is settled for it (acknowledged by
//! SQS, dead-lettered, skipped or filtered out). The committable offset of a partition is the
//! lowest offset still pending, or one past the last offset read when nothing is pending: it
//! never passes a gap, however the acknowledgements arrive.
//!
//! State exists only for partitions this consumer owns. Each assignment gets a new epoch, so an
//! acknowledgement that arrives after its partition was revoked (and perhaps assigned back) is
//! recognised as stale and ignored.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::capacity::trim;

/// A topic and partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// Proof that a record was registered: where it was read, and in which assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub key: PartitionKey,
    pub offset: i64,
    epoch: u64,
}

/// Where a registered record is on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Queued,
    InFlight,
    Done,
}

#[derive(Debug)]
struct PartitionProgress {
    epoch: u64,
    /// Registered offsets not yet passed by the watermark, in offset order.
    pending: VecDeque<(i64, Stage)>,
    /// One past the last offset registered.
    next_offset: Option<i64>,
    in_flight: usize,
    /// The last offset handed out by [`Progress::take_committable`].
    committed: Option<i64>,
}

impl PartitionProgress {
    fn watermark(&self) -> Option<i64> {
        self.pending
            .front()
            .map(|(offset, _)| *offset)
            .or(self.next_offset)
    }

    fn pop_done(&mut self) {
        let mut popped = false;
        while self
            .pending
            .front()
            .is_some_and(|(_, stage)| *stage == Stage::Done)
        {
            self.pending.pop_front();
            popped = true;
        }
        if popped {
            trim(&mut self.pending);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    partitions: HashMap<PartitionKey, PartitionProgress>,
    next_epoch: u64,
}

/// Offsets of the owned partitions, shared by the consumer loop, the senders and the
/// rebalance callbacks.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<State>,
    in_flight_changed: Condvar,
    /// Counts assignment changes, so that the consumer loop notices them cheaply.
    generation: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop offsets from being tracked: the state stays
        // consistent because every update completes under the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes whenever partitions are assigned, revoked, lost or cleared.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts tracking newly assigned partitions.
    pub fn assign(&self, partitions: impl IntoIterator<Item = PartitionKey>) {
        self.changed();
        let mut state = self.lock();
        for key in partitions {
            state.next_epoch += 1;
            let progress = PartitionProgress {
                epoch: state.next_epoch,
                pending: VecDeque::new(),
                next_offset: None,
                in_flight: 0,
                committed: None,
            };
            state.partitions.insert(key, progress);
        }
    }

    /// Stops tracking `partitions`, returning for each that was read the offset to commit.
    pub fn revoke(&self, partitions: &[PartitionKey]) -> Vec<(PartitionKey, i64)> {
        self.changed();
        let mut state = self.lock();
        let mut finals = Vec::new();
        for key in partitions {
            if let Some(p) = state.partitions.remove(key) {
                // Even when handed out before: that commit may still be on its way, and fail.
                if let Some(offset) = p.watermark() {
                    finals.push((key.clone(), offset));
                }
            }
        }
        finals
    }

    /// Forgets the batches in flight, aborted at the end of a drain: their records stay
    /// pending, so the watermark stays before them, and nothing waits for them any more.
    pub fn abandon_in_flight(&self) {
        let mut state = self.lock();
        for p in state.partitions.values_mut() {
            for (_, stage) in &mut p.pending {
                if *stage == Stage::InFlight {
                    *stage = Stage::Queued;
                }
            }
            p.in_flight = 0;
        }
        self.in_flight_changed.notify_all();
    }

    /// Forgets `partitions` without committing: their assignment was lost.
    pub fn abandon(&self, partitions: &[PartitionKey]) {
        self.changed();
        let mut state = self.lock();
        for key in partitions {
            state.partitions.remove(key);
        }
        self.in_flight_changed.notify_all();
    }

    /// Forgets every partition, at the end of a shutdown, once the final offsets are committed.
    pub fn clear(&self) {
        self.changed();
        self.lock().partitions.clear();
        self.in_flight_changed.notify_all();
    }

    /// The partitions currently owned.
    pub fn owned(&self) -> Vec<PartitionKey> {
        self.lock().partitions.keys().cloned().collect()
    }

    /// Registers a record just read. `None` when its partition is not owned (a record fetched
    /// before a revoke) or it was already registered in this assignment: it must be dropped.
    pub fn register(&self, key: &PartitionKey, offset: i64) -> Option<Ticket> {
        let mut state = self.lock();
        let p = state.partitions.get_mut(key)?;
        if p.next_offset.is_some_and(|next| offset < next) {
            return None;
        }
        p.pending.push_back((offset, Stage::Queued));
        p.next_offset = Some(offset + 1);
        Some(Ticket {
            key: key.clone(),
            offset,
            epoch: p.epoch,
        })
    }

    /// True while the ticket's partition is still owned in the assignment it was read in.
    pub fn is_current(&self, ticket: &Ticket) -> bool {
        self.lock()
            .partitions
            .get(&ticket.key)
            .is_some_and(|p| p.epoch == ticket.epoch)
    }

    /// Marks records as handed to SQS; a revoke waits for them.
    pub fn start_sending<'a>(&self, tickets: impl IntoIterator<Item = &'a Ticket>) {
        let mut state = self.lock();
        for ticket in tickets {
            if let Some((p, index)) = find(&mut state, ticket) {
                if p.pending[index].1 == Stage::Queued {
                    p.pending[index].1 = Stage::InFlight;
                    p.in_flight += 1;
                }
            }
        }
    }

    /// Settles a record: nothing more will be done with it.
    pub fn complete(&self, ticket: &Ticket) {
        self.complete_all(std::iter::once(ticket));
    }

    /// Settles records, such as those of one acknowledged batch, under one lock.
    pub fn complete_all<'a>(&self, tickets: impl IntoIterator<Item = &'a Ticket>) {
        let mut state = self.lock();
        let mut idle = false;
        for ticket in tickets {
            let Some((p, index)) = find(&mut state, ticket) else {
                continue;
            };
            let was_in_flight = p.pending[index].1 == Stage::InFlight;
            p.pending[index].1 = Stage::Done;
            p.pop_done();
            if was_in_flight {
                p.in_flight -= 1;
                idle |= p.in_flight == 0;
            }
        }
        if idle {
            self.in_flight_changed.notify_all();
        }
    }

    /// Offsets that advanced since the last call, to be committed.
    pub fn take_committable(&self) -> Vec<(PartitionKey, i64)> {
        let mut state = self.lock();
        let mut advanced = Vec::new();
        for (key, p) in &mut state.partitions {
            if let Some(offset) = p.watermark().filter(|w| Some(*w) > p.committed) {
                p.committed = Some(offset);
                advanced.push((key.clone(), offset));
            }
        }
        advanced
    }

    /// The committable offset of every owned partition that was read, whether or not it was
    /// handed out before: for the last commit, which must not count on earlier commits that
    /// may still fail.
    pub fn watermarks(&self) -> Vec<(PartitionKey, i64)> {
        let state = self.lock();
        let mut all: Vec<_> = state
            .partitions
            .iter()
            .filter_map(|(key, p)| Some((key.clone(), p.watermark()?)))
            .collect();
        all.sort_unstable();
        all
    }

    /// Takes back offsets whose commit failed, so that the next [`Self::take_committable`]
    /// offers them again (or what the watermark reached since). An offset handed out after
    /// the failed one stays handed out: its own commit reports for itself.
    pub fn commit_failed(&self, offsets: &[(PartitionKey, i64)]) {
        let mut state = self.lock();
        for (key, offset) in offsets {
            if let Some(p) = state.partitions.get_mut(key)
                && p.committed == Some(*offset)
            {
                p.committed = None;
            }
        }
    }

    /// The committable offset of one partition, if any record of it was read.
    pub fn watermark(&self, key: &PartitionKey) -> Option<i64> {
        self.lock()
            .partitions
            .get(key)
            .and_then(PartitionProgress::watermark)
    }

    /// Waits until no record of `partitions` is in flight, at most `timeout`. Returns false
    /// when the time ran out.
    pub fn wait_until_idle(&self, partitions: &[PartitionKey], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let busy = partitions
                .iter()
                .any(|key| state.partitions.get(key).is_some_and(|p| p.in_flight > 0));
            let left = deadline.saturating_duration_since(Instant::now());
            if !busy {
                return true;
            }
            if left.is_zero() {
                return false;
            }
            state = self
                .in_flight_changed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

fn find<'a>(state: &'a mut State, ticket: &Ticket) -> Option<(&'a mut PartitionProgress, usize)> {
    let p = state
        .partitions
        .get_mut(&ticket.key)
        .filter(|p| p.epoch == ticket.epoch)?;
    // Offsets are mostly consecutive, so the distance from the first pending one is nearly
    // always the index; compaction and transaction markers leave gaps, hence the search.
    let first = p.pending.front()?.0;
    let guess = usize::try_from(ticket.offset.checked_sub(first)?).ok()?;
    let index = match p.pending.get(guess) {
        Some((offset, _)) if *offset == ticket.offset => guess,
        _ => p
            .pending
            .binary_search_by_key(&ticket.offset, |(offset, _)| *offset)
            .ok()?,
    };
    Some((p, index))
}

#[cfg(test)]
mod tests;
