//! One shutdown signal for the whole process: SIGTERM, SIGINT, or a destination that must
//! stop. Every loop watches it; none is cut off mid-batch. A stop that cannot finish, as
//! when the brokers are gone and the final commit waits for them, ends the process after a
//! bounded time instead of waiting for the orchestrator to kill it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What a stop may take beyond the drain timeout: the final commit and leaving the groups.
pub const FINAL_COMMIT_ALLOWANCE: Duration = Duration::from_secs(10);

/// Drops `value` on a thread of its own and waits at most `limit` for that to finish;
/// returns whether it did. For what blocks in its `Drop` without a bound, such as a Kafka
/// consumer leaving its group, which waits for the group coordinator: a broker that has
/// just restarted may keep that coordinator loading for longer than the whole stop may take.
/// Past `limit` the thread is left to finish, or to end with the process.
pub async fn drop_within<T: Send + 'static>(value: T, limit: Duration) -> bool {
    let (dropped, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("bounded-drop".into())
        .spawn(move || {
            drop(value);
            let _ = dropped.send(());
        });
    // Without a thread, the closure and the value in it were dropped right here.
    if spawned.is_err() {
        return true;
    }
    // A panic in the drop drops the sender unsent: that is no clean close.
    matches!(tokio::time::timeout(limit, done).await, Ok(Ok(())))
}

/// A clonable handle that can trigger the shutdown and wait for it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
    receiver: watch::Receiver<bool>,
    /// When it was first triggered: the stop limit counts from then.
    triggered_at: Arc<OnceLock<Instant>>,
    /// The limit [`Self::exit_if_stuck`] was given.
    exit_limit: Arc<OnceLock<Duration>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self {
            sender,
            receiver,
            triggered_at: Arc::default(),
            exit_limit: Arc::default(),
        }
    }

    pub fn trigger(&self) {
        self.triggered_at.get_or_init(Instant::now);
        self.sender.send_replace(true);
    }

    /// When the shutdown was first triggered, if it was.
    fn triggered_at(&self) -> Option<Instant> {
        self.triggered_at.get().copied()
    }

    /// When the process exits if it is still stopping: once triggered, and only if
    /// [`Self::exit_if_stuck`] was set up.
    pub fn exit_at(&self) -> Option<Instant> {
        Some(self.triggered_at()? + *self.exit_limit.get()?)
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once the shutdown was triggered.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }

    /// Exits the process with `code` once `limit` has passed since the shutdown was
    /// triggered, if it is still running then. Uncommitted records are read again by the
    /// next owner of their partitions, so nothing is lost; the log says so.
    pub fn exit_if_stuck(&self, limit: Duration, code: i32) {
        let _ = self.exit_limit.set(limit);
        let shutdown = self.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            let exit_at = shutdown.exit_at().unwrap_or_else(|| Instant::now() + limit);
            // A thread of its own: a blocking librdkafka call may hold every runtime worker.
            std::thread::spawn(move || {
                std::thread::sleep(exit_at.saturating_duration_since(Instant::now()));
                tracing::error!(
                    limit_ms = limit.as_millis() as u64,
                    "shutdown did not finish in time, probably waiting for Kafka; exiting \
                     without the final commit, so unacknowledged records will be read again"
                );
                std::process::exit(code);
            });
        });
    }

    /// Triggers the shutdown on SIGTERM or SIGINT.
    pub fn listen_for_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down: finishing in-flight batches");
            shutdown.trigger();
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A value whose drop waits until the test lets it go, and reports on which thread it ran.
    struct HeldDrop {
        release: mpsc::Receiver<()>,
        dropped_on: mpsc::Sender<Option<String>>,
    }

    impl Drop for HeldDrop {
        fn drop(&mut self) {
            let _ = self.release.recv();
            let thread = std::thread::current().name().map(str::to_owned);
            let _ = self.dropped_on.send(thread);
        }
    }

    fn held() -> (HeldDrop, mpsc::Sender<()>, mpsc::Receiver<Option<String>>) {
        let (release, released) = mpsc::channel();
        let (dropped_on, dropped) = mpsc::channel();
        let value = HeldDrop {
            release: released,
            dropped_on,
        };
        (value, release, dropped)
    }

    #[tokio::test]
    async fn a_drop_that_finishes_in_time_is_waited_for() {
        let (value, release, dropped) = held();
        release.send(()).unwrap();
        assert!(drop_within(value, Duration::from_secs(60)).await);
        assert_eq!(dropped.try_recv(), Ok(Some("bounded-drop".to_owned())));
    }

    #[tokio::test]
    async fn a_drop_that_takes_too_long_is_left_to_finish_on_its_own() {
        let (value, release, dropped) = held();
        assert!(!drop_within(value, Duration::from_millis(20)).await);
        assert!(dropped.try_recv().is_err(), "not waited for");

        // Let go, it runs to its end on its own thread.
        release.send(()).unwrap();
        let thread = dropped.recv_timeout(Duration::from_secs(60));
        assert_eq!(thread, Ok(Some("bounded-drop".to_owned())));
    }

    #[test]
    fn the_first_trigger_is_when_the_stop_began() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.triggered_at(), None);
        shutdown.trigger();
        let first = shutdown.triggered_at().unwrap();
        shutdown.trigger();
        assert_eq!(shutdown.triggered_at(), Some(first));
    }

    #[tokio::test]
    async fn the_exit_is_the_limit_after_the_first_trigger() {
        let shutdown = Shutdown::new();
        assert_eq!(
            shutdown.exit_at(),
            None,
            "without a limit, no exit is planned"
        );
        // Long enough that this test process never meets it.
        let limit = Duration::from_secs(24 * 3600);
        shutdown.exit_if_stuck(limit, 1);
        assert_eq!(shutdown.exit_at(), None, "not triggered yet");
        shutdown.trigger();
        let triggered = shutdown.triggered_at().unwrap();
        assert_eq!(shutdown.exit_at(), Some(triggered + limit));
    }
}
