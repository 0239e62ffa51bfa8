//! One invocation: plan the batch while writing it, log the tally, answer with the failures.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::SqsBatchResponse;
use lambda_runtime::LambdaEvent;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::budget::{self, Step};
use crate::event::Decoded;
use crate::store::{Store, StoreError};
use login_etl_core::batch::{plan_batch, BatchError, BatchOutcome, Dates};
use login_etl_core::mask::Masker;
use login_etl_core::metrics::Emf;
use login_etl_core::record::{LeanSqsEvent, SqsRecord};

/// Time kept back from Lambda's deadline to report failures and answer before being killed.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// The whole batch failed; Lambda will retry it (and back off) because the handler errs.
#[derive(Debug)]
pub enum HandlerError {
    Batch(BatchError),
    Store(StoreError),
    /// Lambda is ending the environment (SIGTERM): the invocation was refused, or gave up before
    /// the kill.
    ShuttingDown,
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Batch(e) => write!(f, "batch not processed: {e}"),
            HandlerError::Store(e) => write!(f, "batch not processed, it will be retried: {e}"),
            HandlerError::ShuttingDown => write!(
                f,
                "batch not processed, it will be retried: the execution environment is shutting down"
            ),
        }
    }
}

impl std::error::Error for HandlerError {}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Batch(_) => "BatchError",
            HandlerError::Store(StoreError::Unavailable(_)) => "DatabaseUnavailable",
            HandlerError::Store(_) => "DatabaseError",
            HandlerError::ShuttingDown => "ShuttingDown",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// Everything an invocation needs, built once per execution environment.
pub struct Processor {
    masker: Masker,
    store: Store,
    /// Where the per-batch EMF metrics line goes; `None` in tests and tools.
    metrics: Option<Emf>,
    /// The days the partition job keeps (`RETAIN_DAYS`), if the function was told.
    retain_days: Option<u32>,
}

impl Processor {
    /// Panics when the masker seals vault entries and the store was not prepared for them, or
    /// the other way round: a mistake in the code that builds them, not in the input.
    pub fn new(masker: Masker, store: Store) -> Self {
        assert_eq!(
            masker.recovery_key_id().is_some(),
            store.with_vault(),
            "the store must be connected with_vault exactly when the masker has a recovery key"
        );
        Processor {
            masker,
            store,
            metrics: None,
            retain_days: None,
        }
    }

    /// Refuses messages dated before the `retain_days` days the partition job keeps.
    pub fn with_retain_days(mut self, retain_days: Option<u32>) -> Self {
        self.retain_days = retain_days;
        self
    }

    /// Also prints one CloudWatch EMF metrics line per batch.
    pub fn with_metrics(mut self, emf: Emf) -> Self {
        self.metrics = Some(emf);
        self
    }

    /// Closes the database connections; writes after this fail whole (for shutdown).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// The Lambda handler. The event is read as `LeanSqsEvent`, the lean form of `SqsEvent`
    /// (`record.rs`), timed (`budget.rs`: the batch's time budget, at debug level).
    pub async fn handle(
        &self,
        event: LambdaEvent<Decoded<LeanSqsEvent>>,
    ) -> Result<SqsBatchResponse, HandlerError> {
        let deadline = deadline_of(event.context.deadline);
        let (outcome, budget) =
            budget::measure(self.process(&event.payload.value.records, deadline)).await;
        budget.log(event.payload.took);
        Ok(outcome?.response())
    }

    /// Processes one batch; `deadline` is when the answer must be ready.
    pub async fn process(
        &self,
        records: &[impl SqsRecord],
        deadline: Instant,
    ) -> Result<BatchOutcome, HandlerError> {
        let started = Instant::now();
        let dates = Dates::keeping(OffsetDateTime::now_utc().date(), self.retain_days);
        let plan = plan_batch(records, &self.masker, dates).map_err(|e| {
            tracing::error!(error = %e, "batch rejected");
            HandlerError::Batch(e)
        })?;
        budget::lap(Step::Plan);
        for ignored in &plan.ignored_redrives {
            tracing::warn!(
                message_id = %ignored.message_id,
                why = %ignored.why,
                "redrive attribute login-etl-redrive-of ignored; the message is stored under the messageId it was delivered with"
            );
        }
        let report = self
            .store
            .write(&plan.rows, &plan.key_ids, deadline, plan.queue)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, received = records.len(), "batch failed; returning an error so it is retried");
                HandlerError::Store(e)
            })?;
        let outcome = BatchOutcome::new(
            plan,
            report.inserted,
            report.already_stored,
            report.failures,
        );
        for failure in &outcome.failures {
            match &failure.redrive_of {
                Some(original) => {
                    tracing::warn!(message_id = %failure.message_id, redrive_of = %original, reason = %failure.reason, "message not stored")
                }
                None => {
                    tracing::warn!(message_id = %failure.message_id, reason = %failure.reason, "message not stored")
                }
            }
        }
        let duration_ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(emf) = &self.metrics {
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            // EMF must be a line of its own on stdout, not wrapped by the log formatter.
            println!("{}", emf.line(&outcome, duration_ms, now_ms as u64));
        }
        tracing::info!(
            received = outcome.received,
            stored = outcome.stored,
            duplicates = outcome.duplicates,
            invalid = outcome.invalid,
            held_back = outcome.held_back,
            failed = outcome.failed,
            duration_ms,
            "batch processed"
        );
        Ok(outcome)
    }
}

/// Deadlines below this (in ms) cannot be wall-clock times (they fall in January 1970).
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Lambda's deadline (`Lambda-Runtime-Deadline-Ms`) as a monotonic instant, minus the margin we
/// keep for answering. Lambda sends milliseconds since the epoch; cargo-lambda's emulator sends
/// the function timeout itself (600000), so a value too small to be a date is read as a duration.
fn deadline_of(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    };
    Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lambda_deadlines_as_wall_clock_times() {
        let in_three_seconds = SystemTime::now() + Duration::from_secs(3);
        let ms = in_three_seconds
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = deadline_of(ms).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(2_000) && left <= Duration::from_millis(2_500),
            "{left:?}"
        );
    }

    #[test]
    fn reads_emulator_timeouts_as_durations() {
        let left = deadline_of(600_000).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(600),
            "{left:?}"
        );
    }

    #[test]
    fn a_past_deadline_leaves_no_time() {
        let left = deadline_of(EPOCH_MS_FLOOR).saturating_duration_since(Instant::now());
        assert_eq!(left, Duration::ZERO);
    }
}
