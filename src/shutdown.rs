//! The end of an execution environment: Lambda's SIGTERM, and what the function does in the time
//! before the SIGKILL that follows (docs/reliability.md, "Shutdown").
//!
//! Lambda sends SIGTERM only to a runtime with an extension registered, so `register` registers
//! one (it subscribes to no event). Then `drain`: no new invocation is taken, the ones in flight
//! may answer until `DRAIN`, those still running then give up (a function error, so their batch
//! is retried whole; what they committed comes back as duplicates), and the connections close.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Lambda gives the runtime 500 ms between SIGTERM and SIGKILL when only internal extensions are
/// registered (docs/reliability.md cites the figure); the shutdown below fits in it: drain, give up,
/// close.
pub const BUDGET: Duration = Duration::from_millis(500);

/// How long invocations in flight at SIGTERM may go on to answer normally.
pub const DRAIN: Duration = Duration::from_millis(200);

/// How long those still running then have to stop.
pub const GIVE_UP: Duration = Duration::from_millis(80);

/// lambda_runtime posts an answer to the Runtime API after the handler returns, which this
/// module cannot see: the time left for that before the connections close and the process
/// exits. Drain, give up and this, with the connections' close (150 ms), fit in `BUDGET`.
pub const POST_ANSWERS: Duration = Duration::from_millis(40);

/// Invocations in flight, and whether the environment is shutting down.
#[derive(Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Notified whenever an invocation ends.
    ended: Notify,
    /// Set once the invocations still in flight must give up.
    give_up: GiveUp,
}

struct GiveUp(watch::Sender<bool>);

impl Default for GiveUp {
    fn default() -> Self {
        GiveUp(watch::channel(false).0)
    }
}

/// One invocation in flight; it ends when this is dropped.
pub struct InFlight<'l>(&'l Lifecycle);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

impl Lifecycle {
    /// An invocation starts, unless the environment is shutting down (then `None`: the
    /// invocation is refused, and its batch retried).
    pub fn begin(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        if self.draining.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Resolves once invocations in flight must give up.
    pub async fn given_up(&self) {
        let mut receiver = self.give_up.0.subscribe();
        // The sender lives as long as `self`, so this only ends with the flag set.
        let _ = receiver.wait_for(|give_up| *give_up).await;
    }

    /// Stops taking invocations, lets those in flight answer for up to `DRAIN`, then makes the
    /// rest give up and waits up to `GIVE_UP` for them, and leaves lambda_runtime
    /// `POST_ANSWERS` to post the answers. Returns how many answered in time and how many gave
    /// up.
    pub async fn drain(&self) -> (usize, usize) {
        self.draining.store(true, Ordering::SeqCst);
        let at_start = self.in_flight.load(Ordering::SeqCst);
        self.until_idle(DRAIN).await;
        let still_running = self.in_flight.load(Ordering::SeqCst);
        if still_running > 0 {
            self.give_up.0.send_replace(true);
            self.until_idle(GIVE_UP).await;
        }
        if at_start > 0 {
            tokio::time::sleep(POST_ANSWERS).await;
        }
        (at_start.saturating_sub(still_running), still_running)
    }

    /// Waits until no invocation is in flight, for at most `limit`.
    async fn until_idle(&self, limit: Duration) {
        let waiting = async {
            loop {
                let ended = self.ended.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(limit, waiting).await;
    }
}

/// Registers the extension that makes Lambda send SIGTERM (it subscribes to no event), and keeps
/// it running. Without the Extensions API (an emulator, a runtime without it) the function
/// serves all the same, and says so once: Lambda will send no SIGTERM, so connections end when
/// the environment does.
pub async fn register() -> bool {
    // Outside Lambda there is no Runtime API at all (lambda_runtime then stops the function).
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return false;
    }
    let extension = lambda_extension::Extension::new()
        .with_events(&[])
        .with_extension_name("login-etl-shutdown");
    match extension.register().await {
        Ok(registered) => {
            tokio::spawn(async move {
                // It only waits; an error there changes nothing for the invocations.
                let _ = registered.run().await;
            });
            true
        }
        Err(error) => {
            tracing::warn!(
                %error,
                "the Runtime API offers no Extensions API, so the function runs without shutdown handling: no SIGTERM will come, and its database connections end with the environment"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_waits_for_invocations_then_makes_the_rest_give_up() {
        let lifecycle = Lifecycle::default();
        let quick = lifecycle.begin().unwrap();
        let slow = lifecycle.begin().unwrap();
        let started = tokio::time::Instant::now();
        let ((answered, gave_up), (), ()) = tokio::join!(
            lifecycle.drain(),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(quick);
            },
            async {
                lifecycle.given_up().await;
                drop(slow);
            },
        );
        assert_eq!((answered, gave_up), (1, 1));
        assert!(lifecycle.begin().is_none(), "no invocation after SIGTERM");
        assert!(started.elapsed() < BUDGET, "{:?}", started.elapsed());
    }
}
