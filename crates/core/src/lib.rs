//! login-etl's pure core: what happens to a batch between the SQS event and the rows, with no
//! I/O. Cargo enforces it: this crate depends on no runtime, database driver or TLS library.
//!
//! [`record`] (the SQS envelope; [`redrive`], the identity a message sent back from the
//! dead-letter queue keeps) -> [`login`] (parse and validate a body) -> [`mask`] and
//! [`vault`] (HMAC masks, sealed values) -> [`batch`] (the plan, the rows, the outcome) ->
//! [`metrics`] (the outcome as CloudWatch EMF). A message not stored is a [`failure`] with a
//! typed reason; [`fifo`] keeps a FIFO queue's order within each message group. See
//! ARCHITECTURE.md.

pub mod batch;
pub mod failure;
pub mod fifo;
pub mod login;
pub mod mask;
pub mod metrics;
pub mod record;
pub mod redrive;
pub mod vault;
