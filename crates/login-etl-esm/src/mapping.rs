//! The mapping's loop: gather a batch, invoke the function, delete what it did not report as
//! failed; at most `max_concurrency` invocations in flight (one for FIFO queues, so every message
//! group stays in order); one log line per batch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::batcher::{gather, Gathered};
use crate::event::{payload, Received};
use crate::invoke::{Invoker, Signer};
use crate::options::{Options, Settings};
use crate::queue::Queue;
use crate::response::{interpret, Verdict};
use crate::stop::Stop;

/// Region for the SDK where neither the flag nor the environment names one.
const DEFAULT_REGION: &str = "us-east-1";
/// Pause after a failed ReceiveMessage before trying again.
const RECEIVE_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Draining ends after this many empty checks in a row (one receive wait apart).
const EMPTY_CHECKS_TO_DRAIN: u32 = 2;

/// What one batch came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub deleted: usize,
    /// Messages the function reported in `batchItemFailures`.
    pub reported: usize,
    /// The whole batch failed (function error, invalid response, no answer).
    pub failed: bool,
}

/// Totals since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub batches: usize,
    pub records: usize,
    pub deleted: usize,
    pub reported: usize,
    pub failed_batches: usize,
}

impl Totals {
    fn add(&mut self, report: BatchReport) {
        self.batches += 1;
        self.records += report.records;
        self.deleted += report.deleted;
        self.reported += report.reported;
        self.failed_batches += usize::from(report.failed);
    }
}

pub struct Mapping {
    queue: Arc<Queue>,
    invoker: Arc<Invoker>,
    settings: Settings,
}

impl Mapping {
    /// Connects to the queue (checking that it exists) and checks the settings for its kind.
    pub async fn start(options: &Options) -> Result<Mapping, String> {
        let config = sdk_config(options).await;
        let queue = Queue::open(&config, &options.queue_url)
            .await
            .map_err(|e| e.to_string())?;
        let settings = options.settings(queue.identity.is_fifo())?;
        let signer = config.credentials_provider().map(|credentials| Signer {
            credentials,
            region: queue.identity.region.clone(),
        });
        let invoker = Invoker::new(
            &options.function_url,
            &options.function_name,
            Duration::from_secs(options.invoke_timeout),
            signer,
        )?;
        Ok(Mapping {
            queue: Arc::new(queue),
            invoker: Arc::new(invoker),
            settings,
        })
    }

    /// Runs until `stop` (or, when draining, until the queue is empty); batches in flight are
    /// always answered and settled before it returns.
    pub async fn run(self, mut stop: Stop) -> Totals {
        let settings = &self.settings;
        tracing::info!(
            event_source_arn = %self.queue.identity.arn,
            function = %self.invoker.url(),
            batch_size = settings.batch_size,
            batching_window_s = settings.batching_window.as_secs(),
            max_concurrency = settings.max_concurrency,
            drain = settings.drain,
            "polling"
        );
        let permits = Arc::new(Semaphore::new(settings.max_concurrency));
        let mut in_flight: JoinSet<BatchReport> = JoinSet::new();
        let mut totals = Totals::default();
        let mut empty_checks = 0;
        loop {
            reap(&mut in_flight, &mut totals);
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = stop.wait() => break,
            };
            match gather(&self.queue, settings, &stop).await {
                Ok(Gathered::Stopped) => break,
                Ok(Gathered::Batch(batch)) if batch.is_empty() => {
                    drop(permit);
                    if settings.drain {
                        empty_checks = if self.is_drained(&mut in_flight, &mut totals).await {
                            empty_checks + 1
                        } else {
                            0
                        };
                        if empty_checks >= EMPTY_CHECKS_TO_DRAIN {
                            tracing::info!("the queue is empty: drained");
                            break;
                        }
                    }
                }
                Ok(Gathered::Batch(batch)) => {
                    empty_checks = 0;
                    let (queue, invoker) = (self.queue.clone(), self.invoker.clone());
                    in_flight.spawn(settle_batch(queue, invoker, batch, permit));
                }
                Err(error) => {
                    drop(permit);
                    tracing::warn!(%error, "receive failed; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(RECEIVE_RETRY_PAUSE) => {}
                        _ = stop.wait() => break,
                    }
                }
            }
        }
        while let Some(report) = in_flight.join_next().await {
            totals.add(report.expect("a batch task never panics"));
        }
        tracing::info!(
            batches = totals.batches,
            records = totals.records,
            deleted = totals.deleted,
            reported_failures = totals.reported,
            failed_batches = totals.failed_batches,
            "stopped"
        );
        totals
    }

    /// True when no batch is in flight and SQS counts no message in the queue in any state.
    async fn is_drained(&self, in_flight: &mut JoinSet<BatchReport>, totals: &mut Totals) -> bool {
        reap(in_flight, totals);
        if !in_flight.is_empty() {
            return false;
        }
        match self.queue.depth().await {
            Ok(depth) => depth.is_empty(),
            Err(error) => {
                tracing::warn!(%error, "could not read the queue's depth");
                false
            }
        }
    }
}

fn reap(in_flight: &mut JoinSet<BatchReport>, totals: &mut Totals) {
    while let Some(report) = in_flight.try_join_next() {
        totals.add(report.expect("a batch task never panics"));
    }
}

/// Invokes the function with one batch and deletes what succeeded. Logs one line.
async fn settle_batch(
    queue: Arc<Queue>,
    invoker: Arc<Invoker>,
    batch: Vec<Received>,
    _permit: OwnedSemaphorePermit,
) -> BatchReport {
    let started = Instant::now();
    let ids: HashSet<&str> = batch.iter().map(|r| r.message_id.as_str()).collect();
    let redelivered = batch.iter().filter(|r| r.receive_count > 1).count();
    let order: Vec<&str> = batch.iter().map(|r| r.message_id.as_str()).collect();
    tracing::debug!(message_ids = %order.join(","), "invoking");
    let verdict = match invoker.invoke(payload(&batch)).await {
        Ok(reply) => interpret(&reply, &ids),
        Err(failure) => Verdict::DeleteNothing(failure),
    };
    let mut report = BatchReport {
        records: batch.len(),
        ..BatchReport::default()
    };
    match verdict {
        Verdict::DeleteAllExcept(reported) => {
            let succeeded: Vec<(&str, &str)> = batch
                .iter()
                .filter(|r| !reported.contains(&r.message_id))
                .map(|r| (r.message_id.as_str(), r.receipt_handle.as_str()))
                .collect();
            let settled = queue.delete(&succeeded).await;
            for (message_id, why) in &settled.refused {
                tracing::warn!(%message_id, %why, "delete refused; the message will come back");
            }
            report.deleted = settled.done;
            report.reported = reported.len();
            tracing::info!(
                records = report.records,
                distinct = ids.len(),
                redelivered,
                reported_failures = report.reported,
                deleted = report.deleted,
                duration_ms = started.elapsed().as_millis() as u64,
                "batch answered"
            );
        }
        Verdict::DeleteNothing(failure) => {
            report.failed = true;
            tracing::warn!(
                records = report.records,
                distinct = ids.len(),
                redelivered,
                reason = %failure,
                duration_ms = started.elapsed().as_millis() as u64,
                "batch failed; nothing deleted, it returns after the visibility timeout"
            );
        }
    }
    report
}

/// The SDK's configuration: credentials and region from the usual chain, the SQS endpoint from
/// `--endpoint-url` or the SDK's own variables (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL).
async fn sdk_config(options: &Options) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_some() {
        config
    } else {
        config
            .into_builder()
            .region(Region::new(DEFAULT_REGION))
            .build()
    }
}
