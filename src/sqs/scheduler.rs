//! Which messages go into the next batch. Messages of one FIFO message group are sent in the
//! order they were queued, and a group is never in two batches at once: while a batch holding
//! a group is in flight or being retried, that group's later messages wait. Other groups keep
//! going, so throughput scales with the number of groups. Messages without an order key
//! (standard queues) may go in any batch.
//!
//! A batch is released when it is full (by entries or bytes), when its oldest message has
//! waited `linger`, or when the caller flushes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capacity::trim;
use crate::message::OutgoingMessage;

/// How big a batch may be.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// A message waiting to be sent, with the caller's token for it.
#[derive(Debug)]
pub struct Queued<T> {
    pub message: OutgoingMessage,
    pub token: T,
    pub size: usize,
    pub queued_at: Instant,
}

/// Messages taken together for one request, and the groups they hold.
#[derive(Debug)]
pub struct Batch<T> {
    pub entries: Vec<Queued<T>>,
    pub groups: Vec<Arc<str>>,
}

impl<T> Batch<T> {
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.size).sum()
    }
}

#[derive(Debug)]
struct Group<T> {
    queue: VecDeque<Queued<T>>,
    busy: bool,
}

/// A group waiting for a batch, with what its first message looks like; that message does
/// not change while the group waits, so the hot checks need no lookup in `groups`.
#[derive(Debug)]
struct Ready {
    key: Arc<str>,
    queued_at: Instant,
    size: usize,
}

impl Ready {
    fn of<T>(key: Arc<str>, front: &Queued<T>) -> Self {
        Self {
            key,
            queued_at: front.queued_at,
            size: front.size,
        }
    }
}

/// The queue of one destination's messages.
#[derive(Debug)]
pub struct Scheduler<T> {
    limits: BatchLimits,
    linger: Duration,
    one_per_group: bool,
    groups: HashMap<Arc<str>, Group<T>>,
    /// Groups with queued messages and no batch in flight, in the order they became ready.
    ready: VecDeque<Ready>,
    /// Messages without an order key.
    unordered: VecDeque<Queued<T>>,
    queued: usize,
}

impl<T> Scheduler<T> {
    pub fn new(limits: BatchLimits, linger: Duration, one_per_group: bool) -> Self {
        Self {
            limits,
            linger,
            one_per_group,
            groups: HashMap::new(),
            ready: VecDeque::new(),
            unordered: VecDeque::new(),
            queued: 0,
        }
    }

    /// Messages queued and not yet in a batch.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a message; `order_key` is its message group on a FIFO queue.
    pub fn push(
        &mut self,
        order_key: Option<&str>,
        message: OutgoingMessage,
        token: T,
        now: Instant,
    ) {
        let size = message.size();
        let queued = Queued {
            message,
            token,
            size,
            queued_at: now,
        };
        self.queued += 1;
        let Some(key) = order_key else {
            self.unordered.push_back(queued);
            return;
        };
        if let Some(group) = self.groups.get_mut(key) {
            if group.queue.is_empty() && !group.busy {
                self.ready.push_back(Ready::of(Arc::from(key), &queued));
            }
            group.queue.push_back(queued);
            return;
        }
        let key: Arc<str> = Arc::from(key);
        self.ready.push_back(Ready::of(Arc::clone(&key), &queued));
        self.groups.insert(
            key,
            Group {
                queue: VecDeque::from([queued]),
                busy: false,
            },
        );
    }

    /// The next batch to send, if one is due: full, lingered long enough, or `flush`.
    pub fn take(&mut self, now: Instant, flush: bool) -> Option<Batch<T>> {
        let due = flush || self.has_due(now);
        if due { self.build() } else { None }
    }

    /// When the oldest sendable message will have lingered enough, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        // Groups become ready roughly in the order their messages came, so the first few
        // ready groups hold the oldest messages; looking further would cost more than the
        // few milliseconds it could win.
        let grouped = self.ready.iter().take(16).map(|r| r.queued_at);
        let unordered = self.unordered.front().map(|q| q.queued_at);
        grouped
            .chain(unordered)
            .min()
            .map(|oldest| oldest + self.linger)
    }

    /// Ends a batch: its groups may be sent again, their next messages first.
    pub fn release(&mut self, groups: &[Arc<str>]) {
        for key in groups {
            let Some(group) = self.groups.get_mut(key) else {
                continue;
            };
            group.busy = false;
            match group.queue.front() {
                Some(front) => self.ready.push_back(Ready::of(Arc::clone(key), front)),
                None => {
                    self.groups.remove(key);
                }
            }
        }
    }

    /// Drops every queued message whose token fails `keep`, returning them.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&T) -> bool) -> Vec<Queued<T>> {
        let mut removed = Vec::new();
        let mut keep = |q: Queued<T>, into: &mut VecDeque<Queued<T>>| {
            if drop(&q.token) {
                removed.push(q)
            } else {
                into.push_back(q)
            }
        };
        for queue in self
            .groups
            .values_mut()
            .map(|g| &mut g.queue)
            .chain(std::iter::once(&mut self.unordered))
        {
            for q in std::mem::take(queue) {
                keep(q, queue);
            }
        }
        self.queued -= removed.len();
        // A waiting group's first message may be gone: describe it by its new one.
        let groups = &self.groups;
        self.ready = std::mem::take(&mut self.ready)
            .into_iter()
            .filter_map(|r| {
                let front = groups.get(&r.key)?.queue.front()?;
                Some(Ready::of(r.key, front))
            })
            .collect();
        self.groups.retain(|_, g| g.busy || !g.queue.is_empty());
        removed
    }

    /// True when a batch could be taken now without a flush: one is full, or lingered.
    pub fn has_due(&self, now: Instant) -> bool {
        self.can_fill() || self.deadline().is_some_and(|deadline| deadline <= now)
    }

    /// True when the messages ready now would fill a batch.
    pub fn can_fill(&self) -> bool {
        let mut entries = 0;
        let mut bytes = 0;
        let mut count = |size: usize| {
            entries += 1;
            bytes += size;
            entries >= self.limits.max_entries || bytes >= self.limits.max_bytes
        };
        if self.one_per_group {
            // One message per group: the sizes kept in `ready` are all there is to add up.
            let grouped = self.ready.iter().map(|r| r.size);
            let unordered = self.unordered.iter().map(|q| q.size);
            return grouped.chain(unordered).any(&mut count);
        }
        let grouped = self
            .ready
            .iter()
            .filter_map(|r| self.groups.get(&r.key))
            .flat_map(|g| g.queue.iter());
        grouped.chain(self.unordered.iter()).any(|q| count(q.size))
    }

    fn build(&mut self) -> Option<Batch<T>> {
        let mut batch = Batch {
            entries: Vec::new(),
            groups: Vec::new(),
        };
        let mut bytes = 0;
        let mut skipped = Vec::new();
        while batch.entries.len() < self.limits.max_entries {
            let Some(ready) = self.ready.pop_front() else {
                break;
            };
            let group = self.groups.get_mut(&ready.key).expect("ready groups exist");
            let mut took = 0;
            while let Some(front) = group.queue.front() {
                let fits = batch.entries.len() < self.limits.max_entries
                    && bytes + front.size <= self.limits.max_bytes;
                if !fits || (self.one_per_group && took == 1) {
                    break;
                }
                bytes += front.size;
                batch
                    .entries
                    .push(group.queue.pop_front().expect("front exists"));
                took += 1;
            }
            if took == 0 {
                // Its next message does not fit what is left of this batch.
                skipped.push(ready);
                continue;
            }
            trim(&mut group.queue);
            group.busy = true;
            batch.groups.push(ready.key);
        }
        // Groups that did not fit stay first in line.
        for ready in skipped.into_iter().rev() {
            self.ready.push_front(ready);
        }
        while let Some(front) = self.unordered.front() {
            if batch.entries.len() >= self.limits.max_entries
                || bytes + front.size > self.limits.max_bytes
            {
                break;
            }
            bytes += front.size;
            batch
                .entries
                .push(self.unordered.pop_front().expect("front exists"));
        }
        self.queued -= batch.entries.len();
        if batch.entries.is_empty() {
            None
        } else {
            Some(batch)
        }
    }
}

#[cfg(test)]
mod tests;
