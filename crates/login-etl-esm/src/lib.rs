//! `login-etl-esm`: a local stand-in for the AWS Lambda SQS event source mapping (ESM).
//!
//! It polls a queue through the real SQS API, builds the `SqsEvent` Lambda would deliver, invokes
//! the function through the Lambda Invoke API (`cargo lambda watch`, LocalStack or AWS), and
//! deletes the messages the function did not report in `batchItemFailures`. docs/ESM.md compares
//! it with AWS's documentation point by point.
//!
//! One job per module; `event`, `response` and the decisions of `batcher` are pure.

pub mod batcher;
pub mod event;
pub mod invoke;
pub mod mapping;
pub mod options;
pub mod queue;
pub mod response;
pub mod stop;
