//! `login-etl-pii`'s library: recovering, re-masking and forgetting a person's values, and
//! partition retention, run by the operator's tool, never by the function. See ARCHITECTURE.md.

pub mod lifecycle;
pub mod recovery;
