//! One shutdown signal for the whole process: SIGTERM, SIGINT, or a destination that must
//! stop. Every loop watches it; none is cut off mid-batch. A stop that cannot finish, as
//! when the brokers are gone and the final commit waits for them, ends the process after a
//! bounded time instead of waiting for the orchestrator to kill it.

use std::time::Duration;

use tokio::sync::watch;

/// What a stop may take beyond the drain timeout: the final commit and leaving the groups.
pub const FINAL_COMMIT_ALLOWANCE: Duration = Duration::from_secs(10);

/// A clonable handle that can trigger the shutdown and wait for it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self { sender, receiver }
    }

    pub fn trigger(&self) {
        self.sender.send_replace(true);
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
        let shutdown = self.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            // A thread of its own: a blocking librdkafka call may hold every runtime worker.
            std::thread::spawn(move || {
                std::thread::sleep(limit);
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
