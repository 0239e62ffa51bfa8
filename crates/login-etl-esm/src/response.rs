//! The function's answer -> which messages of the batch to delete, by AWS's rules for partial
//! batch responses (ReportBatchItemFailures). Pure.
//!
//! - A function error deletes nothing: the whole batch returns after the visibility timeout.
//!   Real Lambda answers HTTP 200 with `X-Amz-Function-Error`; `cargo lambda watch` answers 500.
//! - Complete success: an empty body, `null`, `{}`, or an empty or null `batchItemFailures`.
//! - Complete failure (delete nothing): a body that is not JSON, `batchItemFailures` that is not a
//!   list, an entry whose `itemIdentifier` is missing (a bad key name), null, empty, or not a
//!   messageId of the batch.
//! - Otherwise every message not listed is deleted.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde_json::Value;

/// What came back from the Invoke API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `X-Amz-Function-Error` header (`Unhandled` or `Handled`).
    pub function_error: Option<String>,
    pub body: Vec<u8>,
}

/// What to do with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delete every message of the batch except these messageIds (empty: delete them all).
    DeleteAllExcept(BTreeSet<String>),
    /// Delete nothing: the whole batch is retried after the visibility timeout.
    DeleteNothing(InvocationFailure),
}

/// Why a whole invocation failed, so no message of its batch is deleted (`batch::Failure` is one
/// message the function reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationFailure {
    /// The function returned an error (`errorType` from its error body, where there is one).
    FunctionError { error_type: Option<String> },
    /// The function answered, but not with a valid partial batch response.
    InvalidResponse(String),
    /// The Invoke API refused or failed the call (not found, throttled, ...).
    InvokeStatus(u16),
    /// No answer at all (connection refused, timeout).
    Unreachable(String),
}

impl fmt::Display for InvocationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvocationFailure::FunctionError {
                error_type: Some(t),
            } => write!(f, "function error ({t})"),
            InvocationFailure::FunctionError { error_type: None } => write!(f, "function error"),
            InvocationFailure::InvalidResponse(why) => {
                write!(f, "invalid partial batch response: {why}")
            }
            InvocationFailure::InvokeStatus(status) => {
                write!(f, "the Invoke API answered HTTP {status}")
            }
            InvocationFailure::Unreachable(why) => {
                write!(f, "the function could not be invoked: {why}")
            }
        }
    }
}

/// Reads the reply to an invocation carrying the messages `batch_ids`.
pub fn interpret(reply: &Reply, batch_ids: &HashSet<&str>) -> Verdict {
    let function_failed = reply.function_error.is_some() || reply.status == 500;
    if function_failed {
        return Verdict::DeleteNothing(InvocationFailure::FunctionError {
            error_type: error_type(&reply.body),
        });
    }
    if !(200..300).contains(&reply.status) {
        return Verdict::DeleteNothing(InvocationFailure::InvokeStatus(reply.status));
    }
    match failed_ids(&reply.body, batch_ids) {
        Ok(failed) => Verdict::DeleteAllExcept(failed),
        Err(why) => Verdict::DeleteNothing(InvocationFailure::InvalidResponse(why)),
    }
}

fn failed_ids(body: &[u8], batch_ids: &HashSet<&str>) -> Result<BTreeSet<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeSet::new());
    }
    // serde_json's message names a position, never the content.
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON ({e})"))?;
    let failures = match &value {
        Value::Null => return Ok(BTreeSet::new()),
        Value::Object(object) => match object.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(BTreeSet::new()),
            Some(Value::Array(failures)) => failures,
            Some(_) => return Err("batchItemFailures is not a list".into()),
        },
        _ => return Err("the response is not a JSON object".into()),
    };
    let mut failed = BTreeSet::new();
    for (index, failure) in failures.iter().enumerate() {
        let id = match failure.get("itemIdentifier") {
            None => {
                return Err(format!(
                    "batchItemFailures[{index}] has no itemIdentifier key"
                ))
            }
            Some(Value::Null) => return Err(format!("batchItemFailures[{index}] is null")),
            Some(Value::String(id)) if id.is_empty() => {
                return Err(format!("batchItemFailures[{index}] is an empty string"))
            }
            Some(Value::String(id)) => id,
            Some(_) => return Err(format!("batchItemFailures[{index}] is not a string")),
        };
        if !batch_ids.contains(id.as_str()) {
            return Err(format!(
                "batchItemFailures[{index}] names {id:?}, which is not a messageId of the batch"
            ));
        }
        failed.insert(id.clone());
    }
    Ok(failed)
}

/// `errorType` of a Lambda error body (`{"errorType": ..., "errorMessage": ...}`). Only the type
/// is kept: it names a class of failure, while a message is free text.
fn error_type(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error_type = value.get("errorType")?.as_str()?;
    Some(error_type.chars().take(100).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Reply {
        Reply {
            status: 200,
            function_error: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn ids() -> HashSet<&'static str> {
        ["m1", "m2", "m3"].into_iter().collect()
    }

    fn verdict(body: &str) -> Verdict {
        interpret(&ok(body), &ids())
    }

    fn all_deleted() -> Verdict {
        Verdict::DeleteAllExcept(BTreeSet::new())
    }

    fn invalid(verdict: Verdict) -> String {
        match verdict {
            Verdict::DeleteNothing(InvocationFailure::InvalidResponse(why)) => why,
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    #[test]
    fn the_listed_messages_are_kept_and_the_others_deleted() {
        assert_eq!(
            verdict(r#"{"batchItemFailures":[{"itemIdentifier":"m2"},{"itemIdentifier":"m3"}]}"#),
            Verdict::DeleteAllExcept(["m2".to_owned(), "m3".to_owned()].into())
        );
    }

    #[test]
    fn empty_or_null_answers_are_complete_successes() {
        for body in [
            "",
            "  ",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(verdict(body), all_deleted(), "{body:?}");
        }
    }

    #[test]
    fn invalid_answers_delete_nothing() {
        assert!(invalid(verdict("{not json")).starts_with("the response is not JSON"));
        assert!(invalid(verdict(r#"["m1"]"#)).contains("not a JSON object"));
        assert!(invalid(verdict(r#"{"batchItemFailures":"m1"}"#)).contains("not a list"));
        assert!(
            invalid(verdict(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#))
                .contains("empty string")
        );
        assert!(invalid(verdict(
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#
        ))
        .contains("is null"));
        assert!(invalid(verdict(
            r#"{"batchItemFailures":[{"itemidentifier":"m1"}]}"#
        ))
        .contains("no itemIdentifier key"));
        assert!(
            invalid(verdict(r#"{"batchItemFailures":[{"itemIdentifier":7}]}"#))
                .contains("not a string")
        );
        let unknown = invalid(verdict(
            r#"{"batchItemFailures":[{"itemIdentifier":"m1"},{"itemIdentifier":"zz"}]}"#,
        ));
        assert_eq!(
            unknown,
            "batchItemFailures[1] names \"zz\", which is not a messageId of the batch"
        );
    }

    #[test]
    fn function_errors_delete_nothing_in_both_conventions() {
        let body = br#"{"errorType":"DatabaseUnavailable","errorMessage":"batch not processed"}"#;
        let lambda = Reply {
            status: 200,
            function_error: Some("Unhandled".into()),
            body: body.to_vec(),
        };
        let cargo_lambda = Reply {
            status: 500,
            function_error: None,
            body: body.to_vec(),
        };
        for reply in [lambda, cargo_lambda] {
            let verdict = interpret(&reply, &ids());
            assert_eq!(
                verdict,
                Verdict::DeleteNothing(InvocationFailure::FunctionError {
                    error_type: Some("DatabaseUnavailable".into())
                })
            );
            if let Verdict::DeleteNothing(failure) = verdict {
                assert_eq!(failure.to_string(), "function error (DatabaseUnavailable)");
            }
        }
        let opaque = Reply {
            status: 500,
            function_error: None,
            body: b"boom".to_vec(),
        };
        assert_eq!(
            interpret(&opaque, &ids()),
            Verdict::DeleteNothing(InvocationFailure::FunctionError { error_type: None })
        );
    }

    #[test]
    fn invoke_api_errors_delete_nothing() {
        for status in [404, 429, 502] {
            let reply = Reply {
                status,
                function_error: None,
                body: br#"{"Type":"User","Message":"..."}"#.to_vec(),
            };
            assert_eq!(
                interpret(&reply, &ids()),
                Verdict::DeleteNothing(InvocationFailure::InvokeStatus(status))
            );
        }
    }
}
