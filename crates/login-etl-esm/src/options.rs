//! The command line, checked against the limits AWS puts on an SQS event source mapping.

use std::time::Duration;

use clap::Parser;

/// Lambda's synchronous invocation payload limit; a batch never grows past it.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// `MaximumBatchingWindowInSeconds` is 0..=300.
pub const MAX_BATCHING_WINDOW_SECS: u64 = 300;
/// `BatchSize` is at most 10,000 for standard queues and 10 for FIFO queues.
pub const MAX_BATCH_SIZE_STANDARD: usize = 10_000;
pub const MAX_BATCH_SIZE_FIFO: usize = 10;
/// `ScalingConfig.MaximumConcurrency` is at most 1,000 (AWS's minimum is 2; locally 1 is useful).
pub const MAX_CONCURRENCY: usize = 1_000;
/// SQS receives at most 10 messages per call, and settles (deletes, releases) at most 10 per
/// batch call.
pub const SQS_MAX_MESSAGES_PER_CALL: usize = 10;
/// SQS long-polls for at most 20 s, which is what Lambda's pollers use.
pub const SQS_MAX_WAIT_SECS: u64 = 20;
/// SQS's largest message (1 MiB).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Polls an SQS queue and invokes a Lambda function with its messages, as the AWS event source
/// mapping does (with ReportBatchItemFailures on). Logs one line per batch; Ctrl-C stops it
/// after the batches in flight are answered.
#[derive(Debug, Clone, Parser)]
#[command(name = "login-etl-esm", version)]
pub struct Options {
    /// The queue to poll, e.g. http://127.0.0.1:4566/000000000000/login-queue
    #[arg(long, env = "ESM_QUEUE_URL")]
    pub queue_url: String,

    /// Base URL of the Lambda Invoke API: `cargo lambda watch` (its address), LocalStack, or
    /// https://lambda.REGION.amazonaws.com (requests are SigV4-signed when credentials exist).
    #[arg(
        long,
        env = "ESM_FUNCTION_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    pub function_url: String,

    /// The function to invoke (`cargo lambda watch` serves it under its binary name).
    #[arg(long, env = "ESM_FUNCTION_NAME", default_value = "login-etl")]
    pub function_name: String,

    /// SQS endpoint; without it the AWS SDK uses AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL or AWS.
    #[arg(long)]
    pub endpoint_url: Option<String>,

    /// AWS region; without it the SDK's chain (AWS_REGION, profile) decides, else us-east-1.
    #[arg(long)]
    pub region: Option<String>,

    /// Most records per invocation (BatchSize): 1..=10000, 1..=10 for FIFO queues; above 10 a
    /// batching window of at least 1 s is required, as on AWS.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,

    /// Seconds to keep gathering records before invoking (MaximumBatchingWindowInSeconds):
    /// 0..=300; not supported for FIFO queues.
    #[arg(long, default_value_t = 0)]
    pub batching_window: u64,

    /// Most invocations in flight at once (ScalingConfig.MaximumConcurrency). FIFO queues get one
    /// batch at a time, which keeps every message group in order.
    #[arg(long, default_value_t = 5)]
    pub max_concurrency: usize,

    /// Exit once the queue holds nothing (no visible, in-flight or delayed messages) and no
    /// invocation is running: for tests and demos.
    #[arg(long)]
    pub drain: bool,

    /// Give up on an invocation after this many seconds (Lambda's longest timeout is 900).
    #[arg(long, default_value_t = 900)]
    pub invoke_timeout: u64,
}

/// The mapping's settings once the queue's kind is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub batch_size: usize,
    pub batching_window: Duration,
    /// FIFO queues are served one batch at a time.
    pub max_concurrency: usize,
    pub drain: bool,
    /// Seconds a ReceiveMessage call may wait for messages (long polling).
    pub receive_wait_secs: i32,
}

impl Options {
    /// Checks the settings as CreateEventSourceMapping would for this kind of queue.
    pub fn settings(&self, fifo: bool) -> Result<Settings, String> {
        let max_batch = if fifo {
            MAX_BATCH_SIZE_FIFO
        } else {
            MAX_BATCH_SIZE_STANDARD
        };
        if self.batch_size == 0 || self.batch_size > max_batch {
            let kind = if fifo { "a FIFO" } else { "a standard" };
            return Err(format!(
                "--batch-size must be 1..={max_batch} for {kind} queue (got {})",
                self.batch_size
            ));
        }
        if self.batching_window > MAX_BATCHING_WINDOW_SECS {
            return Err(format!(
                "--batching-window must be 0..={MAX_BATCHING_WINDOW_SECS} seconds (got {})",
                self.batching_window
            ));
        }
        if fifo && self.batching_window > 0 {
            return Err("--batching-window is not supported for FIFO queues (as on AWS)".into());
        }
        if self.batch_size > 10 && self.batching_window == 0 {
            return Err(
                "--batch-size above 10 needs --batching-window of at least 1 second (as on AWS)"
                    .into(),
            );
        }
        if self.max_concurrency == 0 || self.max_concurrency > MAX_CONCURRENCY {
            return Err(format!(
                "--max-concurrency must be 1..={MAX_CONCURRENCY} (got {})",
                self.max_concurrency
            ));
        }
        if self.invoke_timeout == 0 {
            return Err("--invoke-timeout must be at least 1 second".into());
        }
        Ok(Settings {
            batch_size: self.batch_size,
            batching_window: Duration::from_secs(self.batching_window),
            max_concurrency: if fifo { 1 } else { self.max_concurrency },
            drain: self.drain,
            // Lambda long-polls for 20 s; draining polls for 1 s so that it notices an empty
            // queue quickly (a long poll still returns as soon as a message arrives).
            receive_wait_secs: if self.drain {
                1
            } else {
                SQS_MAX_WAIT_SECS as i32
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let mut argv = vec!["login-etl-esm", "--queue-url", "http://q"];
        argv.extend_from_slice(args);
        Options::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_those_of_aws() {
        let settings = options(&[]).settings(false).unwrap();
        assert_eq!(settings.batch_size, 10);
        assert_eq!(settings.batching_window, Duration::ZERO);
        assert_eq!(settings.receive_wait_secs, 20);
        assert_eq!(settings.max_concurrency, 5);
    }

    #[test]
    fn big_batches_need_a_batching_window() {
        let error = options(&["--batch-size", "100"])
            .settings(false)
            .unwrap_err();
        assert!(error.contains("at least 1 second"), "{error}");
        let ok = options(&["--batch-size", "100", "--batching-window", "1"]).settings(false);
        assert_eq!(ok.unwrap().batch_size, 100);
    }

    #[test]
    fn fifo_queues_take_ten_records_no_window_and_one_batch_at_a_time() {
        assert!(options(&["--batch-size", "11", "--batching-window", "1"])
            .settings(true)
            .unwrap_err()
            .contains("1..=10 for a FIFO queue"));
        assert!(options(&["--batching-window", "2"])
            .settings(true)
            .unwrap_err()
            .contains("not supported for FIFO"));
        let settings = options(&["--max-concurrency", "8"]).settings(true).unwrap();
        assert_eq!(settings.max_concurrency, 1);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for args in [
            &["--batch-size", "0"][..],
            &["--batch-size", "10001", "--batching-window", "5"],
            &["--batching-window", "301"],
            &["--max-concurrency", "0"],
            &["--max-concurrency", "1001"],
            &["--invoke-timeout", "0"],
        ] {
            assert!(options(args).settings(false).is_err(), "{args:?}");
        }
    }

    #[test]
    fn draining_polls_briefly() {
        let settings = options(&["--drain"]).settings(false).unwrap();
        assert!(settings.drain);
        assert_eq!(settings.receive_wait_secs, 1);
    }
}
