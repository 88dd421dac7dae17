use proptest::prelude::*;

use super::*;

fn message(group: &str, size: usize) -> OutgoingMessage {
    OutgoingMessage {
        body: "x".repeat(size).into(),
        group_id: Some(group.to_owned()),
        deduplication_id: None,
        attributes: Vec::new(),
    }
}

fn scheduler(max_entries: usize, max_bytes: usize, one_per_group: bool) -> Scheduler<u32> {
    let limits = BatchLimits {
        max_entries,
        max_bytes,
    };
    Scheduler::new(limits, Duration::from_millis(20), one_per_group)
}

fn tokens(batch: &Batch<u32>) -> Vec<u32> {
    batch.entries.iter().map(|q| q.token).collect()
}

#[test]
fn full_batch_goes_at_once_and_partial_waits_for_linger() {
    let now = Instant::now();
    let mut s = scheduler(3, 1_000, false);
    s.push(Some("a"), message("a", 1), 1, now);
    s.push(Some("b"), message("b", 1), 2, now);
    assert!(
        s.take(now, false).is_none(),
        "two of three entries: not full yet"
    );
    assert!(!s.has_due(now));
    assert!(s.has_due(now + Duration::from_millis(20)));
    assert_eq!(s.deadline(), Some(now + Duration::from_millis(20)));
    assert_eq!(
        tokens(&s.take(now + Duration::from_millis(20), false).unwrap()),
        vec![1, 2]
    );

    for i in 0..3 {
        s.push(Some("c"), message("c", 1), 10 + i, now);
    }
    s.release(&[Arc::from("a"), Arc::from("b")]);
    assert!(s.has_due(now), "a full batch is due at once");
    assert_eq!(tokens(&s.take(now, false).unwrap()), vec![10, 11, 12]);
}

#[test]
fn a_group_in_flight_waits_for_its_release() {
    let now = Instant::now();
    let mut s = scheduler(10, 1_000, false);
    s.push(Some("a"), message("a", 1), 1, now);
    let first = s.take(now, true).unwrap();
    s.push(Some("a"), message("a", 1), 2, now);
    s.push(Some("b"), message("b", 1), 3, now);
    assert_eq!(
        tokens(&s.take(now, true).unwrap()),
        vec![3],
        "group a is busy"
    );
    assert!(s.take(now, true).is_none());
    s.release(&first.groups);
    assert_eq!(tokens(&s.take(now, true).unwrap()), vec![2]);
}

#[test]
fn byte_limit_closes_a_batch() {
    let now = Instant::now();
    let mut s = scheduler(10, 100, false);
    for i in 0..3 {
        s.push(Some(&format!("g{i}")), message("g", 40), i, now);
    }
    let batch = s.take(now, false).unwrap();
    assert_eq!(
        tokens(&batch),
        vec![0, 1],
        "a third 40-byte message would pass 100 bytes"
    );
    assert_eq!(batch.bytes(), 80);
}

#[test]
fn strict_order_takes_one_entry_per_group() {
    let now = Instant::now();
    let mut s = scheduler(10, 1_000, true);
    for i in 0..3 {
        s.push(Some("a"), message("a", 1), i, now);
    }
    s.push(Some("b"), message("b", 1), 9, now);
    assert_eq!(tokens(&s.take(now, true).unwrap()), vec![0, 9]);
}

#[test]
fn unordered_messages_fill_any_batch() {
    let now = Instant::now();
    let mut s = scheduler(2, 1_000, false);
    for i in 0..5 {
        s.push(None, message("-", 1), i, now);
    }
    assert_eq!(tokens(&s.take(now, false).unwrap()), vec![0, 1]);
    assert_eq!(tokens(&s.take(now, false).unwrap()), vec![2, 3]);
    assert!(s.take(now, false).is_none());
    assert_eq!(s.len(), 1);
}

#[test]
fn remove_where_drops_queued_messages() {
    let now = Instant::now();
    let mut s = scheduler(10, 1_000, false);
    for i in 0..6 {
        s.push(
            Some(if i % 2 == 0 { "even" } else { "odd" }),
            message("x", 1),
            i,
            now,
        );
    }
    let removed = s.remove_where(|t| t % 2 == 0);
    assert_eq!(removed.len(), 3);
    assert_eq!(tokens(&s.take(now, true).unwrap()), vec![1, 3, 5]);
    assert!(s.is_empty());
}

#[test]
fn a_waiting_group_is_judged_by_its_current_first_message() {
    let start = Instant::now();
    let later = start + Duration::from_millis(15);
    let linger = Duration::from_millis(20);
    let mut s = scheduler(10, 1_000, true);
    s.push(Some("a"), message("a", 1), 0, start);
    s.push(Some("a"), message("a", 1), 1, later);
    assert_eq!(s.deadline(), Some(start + linger));
    s.remove_where(|t| *t == 0);
    assert_eq!(
        s.deadline(),
        Some(later + linger),
        "the removed message no longer sets the deadline"
    );

    // One entry per group: only the groups' first messages count towards a full batch.
    let mut s = scheduler(10, 100, true);
    s.push(Some("a"), message("a", 10), 0, start);
    s.push(Some("a"), message("a", 95), 1, start);
    s.push(Some("b"), message("b", 10), 2, start);
    assert!(s.take(start, false).is_none(), "two small first messages");
    s.remove_where(|t| *t == 0);
    assert!(
        s.take(start, false).is_some(),
        "a's first message is now the large one"
    );
}

proptest! {
    /// Whatever is queued and however batches complete: no batch breaks a limit, no group is
    /// in two batches at once, and each group's messages are sent in the order queued.
    #[test]
    fn batches_respect_limits_and_group_order(
        pushes in proptest::collection::vec((0u8..6, 1usize..400), 1..200),
        max_entries in 1usize..=10,
        one_per_group: bool,
        release_order in proptest::collection::vec(any::<prop::sample::Index>(), 200),
    ) {
        let now = Instant::now();
        let max_bytes = 1_000;
        let mut s = scheduler(max_entries, max_bytes, one_per_group);
        for (i, (group, size)) in pushes.iter().enumerate() {
            s.push(Some(&group.to_string()), message("", *size), i as u32, now);
        }
        let mut in_flight: Vec<Batch<u32>> = Vec::new();
        let mut sent: Vec<(String, u32)> = Vec::new();
        let mut releases = release_order.into_iter();
        loop {
            while let Some(batch) = s.take(now, true) {
                prop_assert!(batch.entries.len() <= max_entries);
                prop_assert!(batch.bytes() <= max_bytes);
                for group in &batch.groups {
                    let busy = in_flight.iter().any(|b| b.groups.contains(group));
                    prop_assert!(!busy, "group {} in two batches", group);
                }
                for q in &batch.entries {
                    sent.push((q.message.group_id.clone().unwrap(), q.token));
                }
                in_flight.push(batch);
            }
            if in_flight.is_empty() { break; }
            let index = releases.next().map_or(0, |i| i.index(in_flight.len()));
            let done = in_flight.remove(index);
            s.release(&done.groups);
        }
        prop_assert_eq!(sent.len(), pushes.len());
        for group in 0u8..6 {
            let order: Vec<u32> = sent.iter().filter(|(g, _)| *g == group.to_string()).map(|(_, t)| *t).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(order, sorted);
        }
    }
}
