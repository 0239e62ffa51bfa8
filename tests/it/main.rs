//! The integration tests, as one binary (one link, one process per test under nextest): each
//! module is a file of tests against real parts (PostgreSQL, the Lambda binary under
//! cargo-lambda's emulator, LocalStack's SQS); `common` holds the fixtures they share.

mod common;

mod bulk_copy;
mod concurrency;
mod events;
mod fleet;
mod hostile_input;
mod ingest;
mod lambda_emulator;
mod partitions;
mod properties;
mod recovery;
mod redrive;
mod reliability;
mod secrets;
mod sqs_e2e;
mod tidy;
mod tls;
