//! login-etl: SQS user-login events -> HMAC-masked rows in PostgreSQL.
//!
//! Data flows one way: `LambdaEvent<LeanSqsEvent> -> records -> (parse, validate, mask) -> plan ->
//! rows -> Postgres -> outcome -> SqsBatchResponse`. The pure core (the `login-etl-core` crate: `login`, `mask`,
//! `batch`) knows nothing of Lambda or PostgreSQL; [`store`] and [`handler`] are the edges. See
//! ARCHITECTURE.md.

pub mod aws;
pub mod budget;
pub mod config;
pub mod config_error;
pub mod event;
pub mod handler;
pub mod logging;
pub mod secrets;
pub mod shutdown;
pub mod store;
