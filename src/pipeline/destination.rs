//! One destination's loop. It owns the consumer and the scheduler: it reads records, maps the
//! ones its filter selects, queues them by message group, starts batches while the in-flight
//! window has room (and widens or cuts it as batches come back), commits the watermark, and
//! stops reading while too many bytes are waiting (pausing its partitions when that lasts,
//! and at once a partition that holds more than its share). Batches run as their own tasks
//! and settle their records in [`Progress`].
//!
//! On shutdown it stops reading, sends what is queued, waits for the batches in flight up to
//! the drain timeout, commits, and leaves the consumer group.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use prometheus::IntCounter;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, trace, warn};

use super::PipelineError;
use super::delivery::{Delivery, Settled, Token, held_bytes};
use super::poison::{Halt, PoisonHandler};
use super::share::PartitionShares;
use crate::admin::{DestinationHealth, Health};
use crate::config::{Config, DestinationConfig};
use crate::kafka::consumer::{
    BridgeConsumer, TopicNames, create_consumer, describe_error, is_rebalance_refusal,
    offsets_list, partition_key, to_record,
};
use crate::kafka::progress::{PartitionKey, Progress};
use crate::message::select::{Payload, RecordFilter};
use crate::message::{Mapping, MessageMapper};
use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown};
use crate::sqs::client::{ClientSettings, build_client};
use crate::sqs::in_flight_limit::{Change, InFlightLimit, ThrottleSignal};
use crate::sqs::retry::Backoff;
use crate::sqs::scheduler::{BatchLimits, Scheduler};
use crate::sqs::send::BatchSender;

/// The consumer group of a destination.
pub fn group_id(config: &Config, destination: &DestinationConfig) -> String {
    format!("{}.{}", config.kafka.group_id, destination.name)
}

/// Runs destination `index` until shutdown or a halt.
pub async fn run(
    config: Arc<Config>,
    index: usize,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> Result<(), PipelineError> {
    let mut pipeline = DestinationLoop::start(&config, index, metrics).await?;
    let outcome = pipeline.run(&shutdown).await;
    let finished = pipeline.finish(shutdown.exit_at()).await;
    outcome.and(finished)
}

struct DestinationLoop {
    name: String,
    health: Arc<DestinationHealth>,
    consumer: BridgeConsumer,
    progress: Arc<Progress>,
    delivery: Arc<Delivery>,
    filter: Option<RecordFilter>,
    mapper: MessageMapper,
    scheduler: Scheduler<Token>,
    in_flight: JoinSet<Settled>,
    in_flight_limit: InFlightLimit,
    topics: TopicNames,
    /// The received counter of each topic seen.
    received: Vec<(Arc<str>, IntCounter)>,
    buffered: usize,
    max_buffered: usize,
    shares: PartitionShares,
    /// Partitions owned, counted at each assignment change.
    owned_partitions: usize,
    /// Partitions this loop has paused and not resumed. librdkafka keeps a partition paused
    /// through a revoke, so one that is assigned back must be resumed here.
    app_paused: HashSet<PartitionKey>,
    /// When the buffer went over the budget, from then until it is under it again while not
    /// paused, or until a resume.
    over_budget_since: Option<Instant>,
    paused: bool,
    seen_generation: u64,
    metrics: Arc<Metrics>,
    commit_interval: Duration,
    drain_timeout: Duration,
}

impl DestinationLoop {
    async fn start(
        config: &Config,
        index: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PipelineError> {
        let d = &config.destinations[index];
        let name = d.name.to_string();
        let progress = Arc::new(Progress::new());
        let health = Health::global().destination(&name);
        let topics: Vec<&str> = d.topics(&config.kafka).iter().map(|t| t.as_str()).collect();
        let group = group_id(config, d);
        metrics.init_destination(&name, &topics);
        let consumer = create_consumer(
            &config.kafka,
            &group,
            &topics,
            &name,
            Arc::clone(&progress),
            Arc::clone(&metrics),
            Arc::clone(&health),
        )
        .map_err(|source| PipelineError::Consumer {
            destination: name.clone(),
            reason: describe_error(&source),
        })?;

        let request_timeout = Duration::from_millis(d.delivery.request_timeout_ms);
        let settings = ClientSettings::for_destination(d, request_timeout);
        let client = build_client(&settings)
            .await
            .map_err(|e| PipelineError::SqsClient {
                destination: name.clone(),
                reason: e.to_string(),
            })?;
        let sender = BatchSender::new(client, d.queue_url.as_str().to_owned());
        let poison = PoisonHandler::new(
            &name,
            d.delivery.on_undeliverable,
            d.delivery.dead_letter_topic.as_ref().map(|t| t.as_str()),
            &config.kafka,
            Arc::clone(&metrics),
        )
        .map_err(|source| PipelineError::DeadLetterProducer {
            destination: name.clone(),
            reason: describe_error(&source),
        })?;
        let delivery = Arc::new(Delivery {
            destination: name.clone(),
            sender,
            progress: Arc::clone(&progress),
            poison,
            series: metrics.destination_series(&name),
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            throttles: ThrottleSignal::default(),
            transient_backoff: Backoff {
                initial: Duration::from_millis(d.delivery.retry_initial_ms),
                cap: Duration::from_millis(d.delivery.retry_max_ms),
            },
            destination_backoff: Backoff {
                initial: Duration::from_millis(d.delivery.retry_initial_ms.max(1_000)),
                cap: Duration::from_millis(d.delivery.destination_retry_max_ms),
            },
        });
        let limits = BatchLimits {
            max_entries: d.batch.max_entries.get(),
            max_bytes: d.batch.max_batch_bytes.get(),
        };
        let scheduler = Scheduler::new(
            limits,
            Duration::from_millis(d.batch.linger_ms),
            d.batch.strict_order,
        );
        let in_flight_limit = InFlightLimit::new(d.batch.max_in_flight);
        metrics
            .in_flight_limit
            .with_label_values(&[&name])
            .set(in_flight_limit.get() as i64);
        info!(
            destination = %name,
            queue = d.queue_url.as_str(),
            fifo = d.queue_url.is_fifo(),
            group,
            topics = %topics.join(","),
            "destination started"
        );
        Ok(Self {
            filter: d.filter.as_ref().map(RecordFilter::new),
            mapper: MessageMapper::new(d),
            scheduler,
            in_flight: JoinSet::new(),
            in_flight_limit,
            topics: TopicNames::default(),
            received: Vec::new(),
            buffered: 0,
            max_buffered: d.delivery.max_buffered_bytes,
            shares: PartitionShares::default(),
            owned_partitions: 0,
            app_paused: HashSet::new(),
            over_budget_since: None,
            paused: false,
            seen_generation: 0,
            metrics,
            commit_interval: Duration::from_millis(config.kafka.commit_interval_ms),
            drain_timeout: Duration::from_millis(config.shutdown.drain_timeout_ms),
            name,
            health,
            consumer,
            progress,
            delivery,
        })
    }

    /// Reads and delivers until shutdown; then drains.
    async fn run(&mut self, shutdown: &Shutdown) -> Result<(), PipelineError> {
        let mut commit_tick = tokio::time::interval(self.commit_interval);
        commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut halt: Option<Halt> = None;

        while halt.is_none() && !shutdown.is_triggered() {
            self.health.turned();
            self.dispatch(false);
            // With no room in flight a lingered batch cannot go anyway: arming the timer
            // then would only spin the loop.
            let room = self.has_room();
            let linger = if room {
                self.scheduler.deadline().map(Instant::from_std)
            } else {
                None
            };
            // Over the budget the loop reads again once stalled: paused then, or the pause
            // failed and the consumer must still be polled. The pause timer is armed only
            // before that, so it never spins.
            let now = Instant::now();
            let reading = self.buffered <= self.max_buffered || self.stalled(now);
            let pause_at = self
                .over_budget_since
                .map(|since| since + PAUSE_AFTER)
                .filter(|at| *at > now);
            tokio::select! {
                biased;
                _ = shutdown.wait() => {}
                Some(joined) = self.in_flight.join_next() => halt = self.settled_burst(joined),
                received = self.consumer.recv(), if reading => match received {
                    Ok(message) => {
                        let record = to_record(&message, &mut self.topics);
                        drop(message);
                        halt = self.accept(record).or_else(|| self.read_burst());
                    }
                    Err(error) => {
                        warn!(destination = %self.name, %error, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = sleep_until(linger) => {}
                _ = sleep_until(pause_at) => {}
                _ = commit_tick.tick() => {
                    if let Err(error) = self.commit(CommitMode::Async) {
                        warn!(destination = %self.name, %error, "offset commit failed; it is retried with the next one");
                    }
                    self.gauges();
                }
            }
            self.follow_assignment();
            self.apply_backpressure();
        }
        if let Some(Halt(reason)) = halt {
            return Err(PipelineError::Halted {
                destination: self.name.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// Reads what librdkafka already holds, up to [`READ_BURST`] records and the byte budget,
    /// so that one turn of the loop (its timers, clock reads and batch checks) serves many.
    fn read_burst(&mut self) -> Option<Halt> {
        for _ in 1..READ_BURST {
            if self.buffered > self.max_buffered {
                return None;
            }
            match self.consumer.recv().now_or_never()? {
                Ok(message) => {
                    let record = to_record(&message, &mut self.topics);
                    drop(message);
                    if let Some(halt) = self.accept(record) {
                        return Some(halt);
                    }
                }
                Err(error) => {
                    warn!(destination = %self.name, %error, "Kafka consumer error");
                    return None;
                }
            }
        }
        None
    }

    /// Settles a finished batch and every other one that has finished by now.
    fn settled_burst(&mut self, first: Result<Settled, tokio::task::JoinError>) -> Option<Halt> {
        // The first batch no longer counts in flight: the window was full if it was before.
        // The others of the burst came back together with it.
        let window_full = self.in_flight.len() + 1 >= self.in_flight_limit.get()
            && self.scheduler.has_due(std::time::Instant::now());
        let mut halt = self.settled(first, window_full);
        while halt.is_none() {
            let Some(joined) = self.in_flight.try_join_next() else {
                break;
            };
            halt = self.settled(joined, window_full);
        }
        halt
    }

    /// Maps and queues one record, or settles it at once when nothing is to be sent.
    fn accept(&mut self, record: crate::record::Record) -> Option<Halt> {
        let key = PartitionKey {
            topic: Arc::clone(&record.topic),
            partition: record.partition,
        };
        let Some(ticket) = self.progress.register(&key, record.offset) else {
            trace!(destination = %self.name, record = %record.coordinates(), "record of a partition no longer owned; dropped");
            return None;
        };
        self.count_received(&record.topic);
        let payload = Payload::of(&record);
        if let Some(filter) = &self.filter {
            if !filter.selects(&record, &payload) {
                self.metrics
                    .records_filtered
                    .with_label_values(&[&self.name])
                    .inc();
                self.progress.complete(&ticket);
                return None;
            }
        }
        let mapped = self.mapper.map(&record, &payload);
        drop(payload);
        match mapped {
            Ok(Mapping::Send {
                message,
                dropped_headers,
            }) => {
                for reason in dropped_headers {
                    trace!(destination = %self.name, record = %record.coordinates(), reason = reason.as_label(), "header left out of the attributes");
                    self.metrics
                        .headers_dropped
                        .with_label_values(&[&self.name, reason.as_label()])
                        .inc();
                }
                let keep_record = self.delivery.poison.needs_record();
                let buffered = held_bytes(&record, &message, keep_record);
                let group = if self.mapper.is_fifo() {
                    message.group_id.clone()
                } else {
                    None
                };
                let token = Token {
                    ticket,
                    timestamp_ms: record.timestamp_ms,
                    buffered,
                    record: keep_record.then(|| Box::new(record)),
                };
                self.hold_bytes(&token.ticket.key, buffered);
                self.scheduler
                    .push(group.as_deref(), message, token, std::time::Instant::now());
                None
            }
            Ok(Mapping::Skip(reason)) => {
                trace!(destination = %self.name, record = %record.coordinates(), %reason, "record skipped");
                self.metrics
                    .records_skipped
                    .with_label_values(&[&self.name, reason.as_label()])
                    .inc();
                self.progress.complete(&ticket);
                None
            }
            Err(problem) => {
                // Settled in a task of its own, so that a dead-letter produce does not stall
                // the loop; it holds no message group.
                let delivery = Arc::clone(&self.delivery);
                let buffered = record.buffered_bytes();
                self.hold_bytes(&ticket.key, buffered);
                let freed = vec![(ticket.key.clone(), buffered)];
                self.in_flight.spawn(async move {
                    let coordinates = record.coordinates();
                    let halt = match delivery
                        .poison
                        .handle(&coordinates, Some(&record), &problem)
                        .await
                    {
                        Ok(()) => {
                            delivery.progress.complete(&ticket);
                            None
                        }
                        Err(halt) => Some(halt),
                    };
                    Settled {
                        buffered: freed,
                        halt,
                        ..Settled::default()
                    }
                });
                None
            }
        }
    }

    /// Counts a record read from `topic`, with the topic's counter looked up only once.
    fn count_received(&mut self, topic: &Arc<str>) {
        if let Some((_, counter)) = self.received.iter().find(|(t, _)| t == topic) {
            counter.inc();
            return;
        }
        let counter = self
            .metrics
            .records_received
            .with_label_values(&[self.name.as_str(), topic]);
        counter.inc();
        self.received.push((Arc::clone(topic), counter));
    }

    /// Starts batches while there is room in flight.
    fn dispatch(&mut self, flush: bool) {
        self.follow_throttles();
        while self.has_room() {
            let Some(batch) = self.scheduler.take(std::time::Instant::now(), flush) else {
                break;
            };
            let delivery = Arc::clone(&self.delivery);
            self.in_flight.spawn(delivery.deliver(batch));
        }
    }

    /// Settles a finished batch; `window_full` tells whether the window held others back.
    fn settled(
        &mut self,
        joined: Result<Settled, tokio::task::JoinError>,
        window_full: bool,
    ) -> Option<Halt> {
        let settled = match joined {
            Ok(settled) => settled,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => return None,
        };
        if let Some(sent_at) = settled.sent_at {
            let change = self.in_flight_limit.returned(sent_at, window_full);
            self.window_moved(change);
        }
        self.scheduler.release(&settled.groups);
        for (key, bytes) in &settled.buffered {
            self.free_bytes(key, *bytes);
        }
        settled.halt
    }

    /// Counts `bytes` of a record of `key` against the budget and the partition's share.
    fn hold_bytes(&mut self, key: &PartitionKey, bytes: usize) {
        self.buffered += bytes;
        self.shares.add(key, bytes);
    }

    fn free_bytes(&mut self, key: &PartitionKey, bytes: usize) {
        self.buffered = self.buffered.saturating_sub(bytes);
        self.shares.remove(key, bytes);
    }

    fn has_room(&self) -> bool {
        self.in_flight.len() < self.in_flight_limit.get()
    }

    /// Narrows the window for the throttles SQS answered since the last look.
    fn follow_throttles(&mut self) {
        if let Some(sent_at) = self.delivery.throttles.take() {
            let change = self.in_flight_limit.throttled(sent_at);
            self.window_moved(change);
        }
    }

    /// Logs a cut, and shows the window's new size.
    fn window_moved(&self, change: Option<Change>) {
        let Some(change) = change else {
            return;
        };
        let limit = self.in_flight_limit.get();
        if change == Change::Cut {
            debug!(destination = %self.name, limit, "SQS throttled: fewer batches in flight");
        }
        self.metrics
            .in_flight_limit
            .with_label_values(&[&self.name])
            .set(limit as i64);
    }

    /// Commits the watermarks that advanced.
    fn commit(&self, mode: CommitMode) -> Result<(), KafkaError> {
        self.commit_offsets(self.progress.take_committable(), mode)
    }

    fn commit_offsets(
        &self,
        offsets: Vec<(PartitionKey, i64)>,
        mode: CommitMode,
    ) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        debug!(destination = %self.name, partitions = offsets.len(), "committing offsets");
        let committed = self.consumer.commit(&offsets_list(&offsets), mode);
        match &committed {
            Ok(()) => self.metrics.committed(&self.name, &offsets),
            Err(_) => {
                self.progress.commit_failed(&offsets);
                self.metrics
                    .commit_failures
                    .with_label_values(&[&self.name])
                    .inc();
            }
        }
        committed
    }

    /// The last commit, of every owned partition's watermark: a periodic commit still on
    /// its way may yet fail. While the group rebalances, its coordinator refuses commits of
    /// the old generation. Those refusals are retried until `deadline`, serving the
    /// rebalance in between, which covers a short rebalance; one held up by a member that
    /// died lasts until that member's session times out, and the stop fails then. A single
    /// attempt waits for the coordinator as long as librdkafka does: the process's stop
    /// limit (see [`Shutdown::exit_if_stuck`]) is the bound on that.
    async fn commit_before_leaving(&mut self, deadline: Instant) -> Result<(), KafkaError> {
        let mut refused = false;
        loop {
            let offsets = self.progress.watermarks();
            if refused && offsets.is_empty() {
                // The partitions were revoked (and committed by the callback) or lost meanwhile.
                warn!(
                    destination = %self.name,
                    "the partitions left this member before the final commit landed; \
                     their new owners may send some records again"
                );
                return Ok(());
            }
            let error = match self.commit_offsets(offsets, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let now = Instant::now();
            if !is_rebalance_refusal(&error) || now >= deadline {
                return Err(error);
            }
            if !refused {
                info!(
                    destination = %self.name,
                    %error,
                    "final commit refused while the group rebalances; retrying"
                );
                refused = true;
            }
            self.serve_rebalance(COMMIT_RETRY_PAUSE.min(deadline - now))
                .await;
        }
    }

    /// Polls the consumer until `until`, so that rebalance callbacks run. A partition
    /// assigned meanwhile is paused at once, and the records it sent first are dropped:
    /// they are never registered, so never committed, and the next owner reads them.
    async fn serve_rebalance(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut generation = self.progress.generation();
        // `timeout_at` polls `recv` before its clock, so a busy consumer needs the check.
        while Instant::now() < until {
            let Ok(received) = tokio::time::timeout_at(until, self.consumer.recv()).await else {
                break;
            };
            if let Err(error) = received {
                debug!(destination = %self.name, %error, "Kafka consumer error while stopping");
            }
            if self.progress.generation() != generation {
                generation = self.progress.generation();
                self.pause_for_the_stop();
            }
        }
    }

    /// Pauses every partition owned, so that a stop reads nothing more. Unlike
    /// [`Self::set_paused`], nothing of it is kept: the loop is not resumed.
    fn pause_for_the_stop(&self) {
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
    }

    /// After a rebalance, drops queued records of partitions no longer owned.
    fn follow_assignment(&mut self) {
        let generation = self.progress.generation();
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        let progress = Arc::clone(&self.progress);
        let dropped = self
            .scheduler
            .remove_where(|token| !progress.is_current(&token.ticket));
        for queued in &dropped {
            self.free_bytes(&queued.token.ticket.key, queued.token.buffered);
        }
        let owned = progress.owned();
        self.shares.retain(&owned);
        self.owned_partitions = owned.len();
        if !dropped.is_empty() {
            info!(destination = %self.name, records = dropped.len(), "dropped queued records of revoked partitions");
        }
        if self.paused {
            // Newly assigned partitions are not paused: pause them too.
            self.set_paused(true);
            return;
        }
        // A partition revoked while paused comes back paused; only the held ones stay so.
        for key in owned {
            if self.app_paused.contains(&key) && !self.shares.is_held(&key) {
                debug!(destination = %self.name, topic = %key.topic, partition = key.partition, "resuming a partition assigned back while paused");
                self.pause_partition(&key, false);
            }
        }
        self.report_paused(self.shares.held());
    }

    /// Over the byte budget the loop stops reading. librdkafka then stops fetching once its
    /// own small queue is full, and fetches again as soon as the loop reads. A pause would
    /// purge that queue, and after a resume librdkafka's fetcher can wait up to a second
    /// before it fetches again: paused at the budget, a backlog of 4 KiB records drained
    /// eight times slower, and one of 256 B records a fifth slower.
    ///
    /// When the loop has not read for [`PAUSE_AFTER`] (SQS is slow or refusing), every
    /// partition is paused, so that the consumer goes on polling and stays in its group; they
    /// are resumed below three quarters of the budget. Until then, rebalance callbacks (run
    /// inside the consumer's poll) wait too, for at most that second.
    fn apply_backpressure(&mut self) {
        let over = self.buffered > self.max_buffered;
        let now = Instant::now();
        match self.over_budget_since {
            None if over => self.over_budget_since = Some(now),
            Some(_) if !over && !self.paused => self.over_budget_since = None,
            _ => {}
        }
        if !self.paused && self.stalled(now) {
            debug!(destination = %self.name, buffered = self.buffered, "pausing partitions: over the byte budget for a while");
            self.set_paused(true);
            if self.paused {
                self.metrics
                    .backpressure_pauses
                    .with_label_values(&[&self.name])
                    .inc();
            }
        } else if self.paused && self.buffered <= self.max_buffered / 4 * 3 {
            debug!(destination = %self.name, buffered = self.buffered, "resuming partitions");
            self.set_paused(false);
            if !self.paused {
                self.over_budget_since = None;
            }
        }
        if !self.paused {
            self.balance_shares(over);
        }
    }

    /// Pauses the partitions that hold more than their share of a full budget whose records
    /// cannot fill a batch, and resumes them once back to their share: see
    /// [`PartitionShares`].
    fn balance_shares(&mut self, over: bool) {
        let held = self.shares.held();
        if over && self.short_of_groups() {
            for key in self
                .shares
                .over_share(self.max_buffered, self.owned_partitions)
            {
                if self.pause_partition(&key, true) {
                    debug!(destination = %self.name, topic = %key.topic, partition = key.partition, "pausing a partition that holds more than its share of the byte budget");
                    self.shares.hold(key);
                    self.metrics
                        .share_pauses
                        .with_label_values(&[&self.name])
                        .inc();
                }
            }
        }
        if self.shares.held() > 0 {
            for key in self
                .shares
                .back_to_share(self.max_buffered, self.owned_partitions)
            {
                if self.pause_partition(&key, false) {
                    debug!(destination = %self.name, topic = %key.topic, partition = key.partition, "resuming a partition back to its share of the byte budget");
                    self.shares.release(&key);
                }
            }
        }
        if self.shares.held() != held {
            self.report_paused(self.shares.held());
        }
    }

    /// True when there is room in flight but the queued records cannot fill a batch: their
    /// message groups are in flight.
    fn short_of_groups(&self) -> bool {
        self.has_room() && !self.scheduler.can_fill()
    }

    /// Pauses or resumes one partition; true when librdkafka did.
    fn pause_partition(&mut self, key: &PartitionKey, pause: bool) -> bool {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&key.topic, key.partition);
        self.pause_or_resume(&partitions, pause)
    }

    /// Pauses or resumes `partitions`, and remembers which this loop paused; true when
    /// librdkafka did.
    fn pause_or_resume(&mut self, partitions: &TopicPartitionList, pause: bool) -> bool {
        let done = if pause {
            self.consumer.pause(partitions)
        } else {
            self.consumer.resume(partitions)
        };
        if done.is_err() {
            return false;
        }
        for element in partitions.elements() {
            let key = partition_key(&element);
            if pause {
                self.app_paused.insert(key);
            } else {
                self.app_paused.remove(&key);
            }
        }
        true
    }

    fn report_paused(&self, partitions: usize) {
        self.metrics
            .paused_partitions
            .with_label_values(&[&self.name])
            .set(partitions as i64);
    }

    /// True once the loop has been over the budget, unable to read, for [`PAUSE_AFTER`].
    fn stalled(&self, now: Instant) -> bool {
        self.over_budget_since
            .is_some_and(|since| now >= since + PAUSE_AFTER)
    }

    fn set_paused(&mut self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        if self.pause_or_resume(&assignment, paused) {
            self.paused = paused;
            // Every partition was paused or resumed, those held for their share too.
            self.shares.release_all();
            self.report_paused(if paused { assignment.count() } else { 0 });
        }
    }

    fn gauges(&self) {
        let name = self.name.as_str();
        self.metrics
            .in_flight_batches
            .with_label_values(&[name])
            .set(self.in_flight.len() as i64);
        self.metrics
            .buffered_bytes
            .with_label_values(&[name])
            .set(self.buffered as i64);
    }

    /// Sends what is queued, waits for the batches in flight up to the drain timeout, commits
    /// what was acknowledged (through a rebalance, if one is under way) and leaves the
    /// group, waiting for each at most until [`STOP_MARGIN`] before `exit_at`, when the
    /// process exits if still stopping (without one, as after a halt, the drain deadline
    /// plus the stop's allowance). Fails when the last commit does: the stop was then not
    /// clean, though nothing is lost (the records are read again).
    async fn finish(mut self, exit_at: Option<std::time::Instant>) -> Result<(), PipelineError> {
        self.pause_for_the_stop();
        let deadline = Instant::now() + self.drain_timeout;
        info!(destination = %self.name, queued = self.scheduler.len(), in_flight = self.in_flight.len(), "draining");
        loop {
            self.dispatch(true);
            if self.in_flight.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.in_flight.join_next() => if let Some(joined) = joined { let _ = self.settled(joined, false); },
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(destination = %self.name, abandoned = self.in_flight.len(), "drain timeout reached; unacknowledged records will be read again");
                    self.in_flight.abort_all();
                    // A revoke while the final commit is retried must not wait for them.
                    self.progress.abandon_in_flight();
                    break;
                }
            }
        }
        // Counted from the signal, which the loop may have noticed late (inside a revoke
        // callback's wait), not from the drain's start.
        let stop_by = exit_at.map_or(
            deadline + shutdown::FINAL_COMMIT_ALLOWANCE,
            Instant::from_std,
        ) - STOP_MARGIN;
        let committed = self
            .commit_before_leaving((deadline + COMMIT_RETRY_ALLOWANCE).min(stop_by))
            .await;
        // Nothing is left to wait for: the revoke that closing triggers must not wait either.
        self.progress.clear();
        self.consumer.unsubscribe();
        let Self { name, consumer, .. } = self;
        let close_limit = stop_by.saturating_duration_since(Instant::now());
        if !shutdown::drop_within(consumer, close_limit).await {
            // What was acknowledged is committed (or the commit failed, and says so below).
            warn!(
                destination = %name,
                waited_ms = close_limit.as_millis() as u64,
                "the consumer has not left its group in time; stopping anyway: the group \
                 hands its partitions on when its session times out"
            );
        }
        info!(destination = %name, "destination stopped");
        committed.map_err(|error| PipelineError::FinalCommit {
            destination: name,
            reason: describe_error(&error),
        })
    }
}

/// How long past the drain deadline a final commit refused by a rebalance is retried: half
/// of the 10 s a stop may take after the drain, the rest being for leaving the group.
const COMMIT_RETRY_ALLOWANCE: Duration = Duration::from_secs(5);

/// How long before the stop limit the final commit's retries and leaving the group give up,
/// so that a close stuck on the group coordinator ends with the final commit's verdict
/// rather than the stop limit's exit 1. Leaving usually takes well under a second, and a
/// few seconds while the group rebalances.
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// The pause between two attempts of the final commit.
const COMMIT_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The most records one turn of the loop reads without waiting.
const READ_BURST: usize = 64;

/// How long the loop may go without reading, over the byte budget, before it pauses the
/// partitions; far below `max.poll.interval.ms`, and long enough that a backlog's short
/// stops never pause.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
