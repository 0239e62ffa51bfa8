//! The stop signal: the first Ctrl-C (or SIGTERM) asks for a clean stop, in which the current
//! poll returns, what was gathered goes back to the queue, and the batches in flight are answered
//! and settled; a second one exits at once.

use tokio::sync::watch;

/// A cloneable view of "has a stop been asked for?".
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A stop that is triggered through the returned sender (tests, embedding).
    pub fn manual() -> (watch::Sender<bool>, Stop) {
        let (sender, receiver) = watch::channel(false);
        (sender, Stop(receiver))
    }

    /// A stop triggered by SIGINT or SIGTERM; the second signal ends the process (exit 130).
    pub fn on_signals() -> std::io::Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (sender, stop) = Stop::manual();
        tokio::spawn(async move {
            for n in 0.. {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if n == 0 {
                    tracing::info!("stopping once the current poll returns and the batches in flight are answered (again to quit now)");
                    let _ = sender.send(true);
                } else {
                    tracing::warn!(
                        "quitting now; batches in flight return after the visibility timeout"
                    );
                    std::process::exit(130);
                }
            }
        });
        Ok(stop)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means the sender is gone: nobody can ask for a stop any more.
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
