//! Why a message was not stored: a reason of a known kind, made text only where it leaves the
//! function (the "message not stored" log line, the tools). The kind decides how a message is
//! counted (`BatchOutcome`, the EMF metrics); the text tells an operator what to fix and never
//! holds a value of the message.

use std::fmt;

use crate::batch::LoginRow;

/// A message that will be reported in `batchItemFailures`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The messageId SQS delivered the message under: the one `batchItemFailures` names.
    pub message_id: String,
    /// For a message the dead-letter tool sent back, the original messageId its row is stored
    /// under (`redrive.rs`), for the log.
    pub redrive_of: Option<String>,
    pub reason: Reason,
    /// Where the message stands in the batch as delivered.
    pub position: usize,
}

impl Failure {
    /// A planned row that was not stored, and why.
    pub fn of(row: &LoginRow, reason: Reason) -> Self {
        Failure {
            message_id: row.delivered_id().to_owned(),
            redrive_of: row.delivered_as.as_ref().map(|_| row.message_id.clone()),
            reason,
            position: row.position,
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Not a login event the function can store: its body, or the SQS record around it. The text
    /// names the field and the rule, never the value. Permanent: redelivery cannot help.
    Rejected(String),
    /// On a FIFO queue, an earlier message of its message group failed in this batch, so this one
    /// was not processed: storing it would break the group's order.
    HeldBack,
    /// Its write was not confirmed before the invocation's deadline (it may have committed; the
    /// redelivery is then recognised as stored).
    NotConfirmed,
    /// The database refused the row for its data (a constraint, a trigger): the server's
    /// description, without the row's values.
    RefusedByDatabase(String),
    /// The database aborted every attempt at the write for lock contention.
    Contention { attempts: u32, error: String },
    /// The server cancelled the statement (SQLSTATE 57014) before the deadline.
    Cancelled,
}

/// The text of `Reason::HeldBack`.
pub const HELD_BACK: &str =
    "not processed: an earlier message of its FIFO message group failed in this batch";

/// The text of `Reason::NotConfirmed`.
pub const NOT_CONFIRMED: &str = "not confirmed: the invocation deadline was reached";

/// The text of `Reason::Cancelled`.
pub const CANCELLED: &str = "not stored: the server cancelled the statement (SQLSTATE 57014: pg_cancel_backend, or a statement_timeout set on the role or database) before the invocation deadline";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rejected(why) => f.write_str(why),
            Reason::HeldBack => f.write_str(HELD_BACK),
            Reason::NotConfirmed => f.write_str(NOT_CONFIRMED),
            Reason::RefusedByDatabase(error) => {
                write!(f, "the database refused the row ({error})")
            }
            Reason::Contention { attempts, error } => write!(
                f,
                "not stored: the database aborted the write {attempts} times for lock contention ({error})"
            ),
            Reason::Cancelled => f.write_str(CANCELLED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_says_what_happened_in_words_an_operator_can_act_on() {
        for (reason, expected) in [
            (Reason::Rejected("ip is missing".into()), "ip is missing"),
            (
                Reason::HeldBack,
                "an earlier message of its FIFO message group failed",
            ),
            (Reason::NotConfirmed, "deadline was reached"),
            (
                Reason::RefusedByDatabase("SQLSTATE 23514".into()),
                "the database refused the row (SQLSTATE 23514)",
            ),
            (
                Reason::Contention {
                    attempts: 6,
                    error: "SQLSTATE 40P01".into(),
                },
                "aborted the write 6 times for lock contention (SQLSTATE 40P01)",
            ),
            (Reason::Cancelled, "SQLSTATE 57014"),
        ] {
            assert!(reason.to_string().contains(expected), "{reason}");
        }
    }
}
