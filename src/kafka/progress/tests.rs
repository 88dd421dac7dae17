use proptest::prelude::*;

use super::*;

fn key(partition: i32) -> PartitionKey {
    PartitionKey {
        topic: Arc::from("records"),
        partition,
    }
}

fn owned(partitions: &[i32]) -> Progress {
    let progress = Progress::new();
    progress.assign(partitions.iter().map(|p| key(*p)));
    progress
}

#[test]
fn watermark_waits_for_the_lowest_pending_offset() {
    let progress = owned(&[0]);
    let tickets: Vec<Ticket> = (10..15)
        .map(|o| progress.register(&key(0), o).unwrap())
        .collect();
    assert_eq!(progress.watermark(&key(0)), Some(10));

    progress.complete(&tickets[2]);
    progress.complete(&tickets[1]);
    assert_eq!(
        progress.watermark(&key(0)),
        Some(10),
        "offset 10 is still pending"
    );

    progress.complete(&tickets[0]);
    assert_eq!(progress.watermark(&key(0)), Some(13));

    progress.complete(&tickets[4]);
    progress.complete(&tickets[3]);
    assert_eq!(progress.watermark(&key(0)), Some(15));
}

#[test]
fn gaps_in_offsets_do_not_stall_the_watermark() {
    // Transaction markers and compaction leave offsets that are never read.
    let progress = owned(&[0]);
    let a = progress.register(&key(0), 3).unwrap();
    let b = progress.register(&key(0), 7).unwrap();
    progress.complete(&a);
    assert_eq!(progress.watermark(&key(0)), Some(7));
    progress.complete(&b);
    assert_eq!(progress.watermark(&key(0)), Some(8));
}

#[test]
fn committable_offsets_are_handed_out_once() {
    let progress = owned(&[0, 1]);
    let t = progress.register(&key(0), 0).unwrap();
    assert_eq!(progress.take_committable(), vec![(key(0), 0)]);
    assert!(progress.take_committable().is_empty());
    progress.complete(&t);
    assert_eq!(progress.take_committable(), vec![(key(0), 1)]);
}

#[test]
fn offsets_of_a_failed_commit_are_offered_again() {
    let progress = owned(&[0, 1]);
    let t = progress.register(&key(0), 0).unwrap();
    progress.register(&key(1), 4).unwrap();
    progress.complete(&t);
    let mut taken = progress.take_committable();
    taken.sort();
    assert_eq!(taken, vec![(key(0), 1), (key(1), 4)]);

    progress.commit_failed(&taken);
    let mut again = progress.take_committable();
    again.sort();
    assert_eq!(again, taken, "a failed commit is not a commit");
    assert!(progress.take_committable().is_empty());
}

#[test]
fn watermarks_include_offsets_already_handed_out() {
    let progress = owned(&[0, 1, 2]);
    let t = progress.register(&key(0), 5).unwrap();
    progress.register(&key(1), 9).unwrap();
    progress.complete(&t);
    progress.take_committable();
    assert!(progress.take_committable().is_empty());

    // Partition 2 was never read: it has nothing to commit.
    assert_eq!(progress.watermarks(), vec![(key(0), 6), (key(1), 9)]);
}

#[test]
fn abandoned_batches_hold_the_watermark_but_nobody_waits_for_them() {
    let progress = owned(&[0]);
    let sent = progress.register(&key(0), 3).unwrap();
    progress.register(&key(0), 4).unwrap();
    progress.start_sending([&sent]);
    assert!(!progress.wait_until_idle(&[key(0)], Duration::ZERO));

    progress.abandon_in_flight();
    assert!(progress.wait_until_idle(&[key(0)], Duration::ZERO));
    assert_eq!(
        progress.watermark(&key(0)),
        Some(3),
        "offset 3 was never acknowledged"
    );
}

#[test]
fn revoke_returns_the_watermark_even_when_handed_out_before() {
    let progress = owned(&[0]);
    let t = progress.register(&key(0), 0).unwrap();
    progress.complete(&t);
    assert_eq!(progress.take_committable(), vec![(key(0), 1)]);
    // That commit may still fail: the revoke commits the offset again.
    assert_eq!(progress.revoke(&[key(0)]), vec![(key(0), 1)]);
}

#[test]
fn a_late_failure_does_not_take_back_a_newer_offset() {
    let progress = owned(&[0]);
    let a = progress.register(&key(0), 0).unwrap();
    let first = progress.take_committable();
    progress.complete(&a);
    let second = progress.take_committable();
    assert_eq!(second, vec![(key(0), 1)]);

    // The first commit's failure arrives after the second was handed out.
    progress.commit_failed(&first);
    assert!(progress.take_committable().is_empty());
}

#[test]
fn records_of_unowned_partitions_are_refused() {
    let progress = owned(&[0]);
    assert!(progress.register(&key(1), 0).is_none());
}

#[test]
fn stale_ticket_after_revoke_and_reassign_is_ignored() {
    let progress = owned(&[0]);
    let old = progress.register(&key(0), 5).unwrap();
    assert_eq!(progress.revoke(&[key(0)]), vec![(key(0), 5)]);

    progress.assign([key(0)]);
    let new = progress.register(&key(0), 5).unwrap();
    assert!(!progress.is_current(&old));
    progress.complete(&old);
    assert_eq!(
        progress.watermark(&key(0)),
        Some(5),
        "the old ticket must not settle offset 5"
    );
    progress.complete(&new);
    assert_eq!(progress.watermark(&key(0)), Some(6));
}

#[test]
fn offsets_read_again_in_one_assignment_are_refused() {
    let progress = owned(&[0]);
    progress.register(&key(0), 4).unwrap();
    assert!(progress.register(&key(0), 4).is_none());
    assert!(progress.register(&key(0), 2).is_none());
}

#[test]
fn revoke_waits_for_in_flight_records_only() {
    let progress = Arc::new(owned(&[0, 1]));
    let _queued = progress.register(&key(0), 0).unwrap();
    let sent = progress.register(&key(1), 0).unwrap();
    progress.start_sending([&sent]);

    assert!(
        progress.wait_until_idle(&[key(0)], Duration::ZERO),
        "queued records are not waited for"
    );
    assert!(!progress.wait_until_idle(&[key(1)], Duration::from_millis(10)));

    let completer = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            progress.complete(&sent);
        })
    };
    assert!(progress.wait_until_idle(&[key(1)], Duration::from_secs(5)));
    completer.join().unwrap();
}

#[test]
fn a_batch_is_settled_in_one_call_and_repeated_tickets_are_ignored() {
    let progress = owned(&[0, 1]);
    let first: Vec<Ticket> = (0..3)
        .map(|o| progress.register(&key(0), o).unwrap())
        .collect();
    let other = progress.register(&key(1), 5).unwrap();
    progress.start_sending(first.iter().chain([&other]));

    progress.complete_all([&first[0], &first[2], &other, &first[0]]);
    assert_eq!(progress.watermark(&key(0)), Some(1));
    assert_eq!(progress.watermark(&key(1)), Some(6));
    assert!(
        !progress.wait_until_idle(&[key(0)], Duration::ZERO),
        "offset 1 is still in flight"
    );
    assert!(progress.wait_until_idle(&[key(1)], Duration::ZERO));

    // Offset 0 is behind the watermark now: settling it again changes nothing.
    progress.complete(&first[0]);
    progress.complete_all([&first[1]]);
    assert_eq!(progress.watermark(&key(0)), Some(3));
    assert!(progress.wait_until_idle(&[key(0)], Duration::ZERO));
}

proptest! {
    /// However acknowledgements are ordered, the watermark is the lowest unacknowledged
    /// offset, or one past the last read once all are acknowledged.
    #[test]
    fn watermark_is_lowest_unacknowledged(
        gaps in proptest::collection::vec(1i64..4, 1..60),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 60),
    ) {
        let progress = owned(&[0]);
        let mut offset = 0;
        let mut tickets = Vec::new();
        for gap in gaps {
            offset += gap;
            tickets.push(progress.register(&key(0), offset).unwrap());
        }
        let last = offset;
        let mut open: Vec<Ticket> = tickets.clone();
        for index in order {
            if open.is_empty() { break; }
            let ticket = open.remove(index.index(open.len()));
            progress.complete(&ticket);
            let expected = open.iter().map(|t| t.offset).min().unwrap_or(last + 1);
            prop_assert_eq!(progress.watermark(&key(0)), Some(expected));
        }
    }
}
