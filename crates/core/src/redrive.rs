//! A message sent back from the dead-letter queue keeps the identity of the message it was.
//!
//! SQS gives a message sent back a new messageId (a `SendMessage`, and a message-move task too),
//! and a new `SentTimestamp`. A row is identified by (message_id, create_date), so without more
//! a redrive that is repeated (the delete from the dead-letter queue failed, or an operator ran
//! it twice) would be a second row. The dead-letter tool (`login-etl-dlq`) therefore sends the
//! message back with the message attribute `login-etl-redrive-of`, which names the original:
//!
//! ```text
//! <original messageId> <original SentTimestamp> <SHA-256 of the body, lowercase hex>
//! ```
//!
//! and the planner stores the row under the original's id and date, so any number of redrives
//! of one message is one row.
//!
//! The guard: nothing but the tool should make a message take another's identity. The attribute
//! is honoured only whole, when each of its three fields has the form the tool writes and the
//! SHA-256 is that of the body delivered with it; otherwise it is ignored (the message is stored
//! under the messageId it was delivered with, as without the attribute) and the function logs
//! that it did, without a value. A producer that copies message attributes from one message to
//! the next therefore cannot merge two logins: the next body is another body. What the guard
//! does not stop is a sender who means to forge the attribute (anyone who may send to the queue
//! can compute a SHA-256); such a sender can send any login anyway.
//!
//! A message redriven twice (it failed again after a redrive) keeps the first original: the tool
//! copies an attribute that passes this guard rather than naming the redriven message.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::mask::to_lower_hex;
use crate::record::sent_timestamp_millis;

/// The message attribute's name (a `String` attribute).
pub const ATTRIBUTE: &str = "login-etl-redrive-of";

/// The longest original messageId the attribute may name: the column's limit
/// (`message_id varchar(128)`); SQS's own ids are 36-character UUIDs.
pub const ORIGINAL_ID_MAX_CHARS: usize = 128;

/// The form of the attribute's value, as a reason names it.
pub const FORM: &str = "<original messageId> <original SentTimestamp> <SHA-256 of the body>";

/// The message a redriven message was, as its attribute names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original<'a> {
    /// The original messageId: the row's identity.
    pub message_id: &'a str,
    /// The original `SentTimestamp` (milliseconds since 1970, the digits SQS writes): the row's
    /// date.
    pub sent_timestamp: &'a str,
}

/// Why an attribute was ignored; the text names the rule, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not three fields separated by single spaces.
    Form,
    /// The messageId is not 1 to 128 ASCII letters, digits and hyphens.
    MessageId,
    /// The SentTimestamp is not the digits SQS writes.
    SentTimestamp,
    /// The SHA-256 is not that of the body delivered with it: the attribute was made for another
    /// message (or the body was changed).
    Body,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Form => write!(f, "its value is not of the form {FORM}"),
            Ignored::MessageId => write!(
                f,
                "its messageId is not 1 to {ORIGINAL_ID_MAX_CHARS} ASCII letters, digits and hyphens"
            ),
            Ignored::SentTimestamp => f.write_str(
                "its SentTimestamp is not milliseconds since 1970 as a string of decimal digits",
            ),
            Ignored::Body => f.write_str(
                "its SHA-256 is not that of the body: it was made for another message",
            ),
        }
    }
}

/// The attribute's value for a message sent back: `message_id` and `sent_timestamp` are the
/// original's, `body` the body sent.
pub fn mark(message_id: &str, sent_timestamp: &str, body: &str) -> String {
    format!("{message_id} {sent_timestamp} {}", body_digest(body))
}

/// The original named by `value`, when it passes the guard for `body` (see the module's text).
pub fn original<'a>(value: &'a str, body: &str) -> Result<Original<'a>, Ignored> {
    let mut fields = value.split(' ');
    let (Some(message_id), Some(sent_timestamp), Some(digest), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Ignored::Form);
    };
    if message_id.is_empty()
        || message_id.len() > ORIGINAL_ID_MAX_CHARS
        || !message_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Ignored::MessageId);
    }
    if sent_timestamp_millis(sent_timestamp).is_none() {
        return Err(Ignored::SentTimestamp);
    }
    if digest.len() != 64 || digest != body_digest(body) {
        return Err(Ignored::Body);
    }
    Ok(Original {
        message_id,
        sent_timestamp,
    })
}

/// SHA-256 of the body's bytes, as lowercase hex.
fn body_digest(body: &str) -> String {
    to_lower_hex(&Sha256::digest(body.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b8e6c4e-6b1f-4d8a-9c55-1f1b8a2d3c4e";
    const BODY: &str = r#"{"user_id": "u1", "ip": "203.0.113.9"}"#;

    #[test]
    fn the_mark_the_tool_writes_names_the_original_for_its_own_body() {
        let value = mark(ID, "1700000000000", BODY);
        assert_eq!(
            original(&value, BODY),
            Ok(Original {
                message_id: ID,
                sent_timestamp: "1700000000000"
            })
        );
        // SHA-256 as everyone computes it.
        assert_eq!(
            body_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A producer that copies the attribute onto another message, an attribute of another
    /// form, or a value nobody wrote: ignored, for a reason that quotes nothing.
    #[test]
    fn an_attribute_not_made_for_this_body_or_not_of_the_tools_form_is_ignored() {
        let value = mark(ID, "1700000000000", BODY);
        let other_body = BODY.replace("u1", "u2");
        assert_eq!(original(&value, &other_body), Err(Ignored::Body));
        let digest = body_digest(BODY);
        for (value, why) in [
            (String::new(), Ignored::Form),
            (ID.to_owned(), Ignored::Form),
            (format!("{ID} 1700000000000"), Ignored::Form),
            (format!("{ID}  1700000000000 {digest}"), Ignored::Form),
            (format!("{ID} 1700000000000 {digest} x"), Ignored::Form),
            (format!(" 1700000000000 {digest}"), Ignored::MessageId),
            (
                format!("{} 1700000000000 {digest}", "a".repeat(129)),
                Ignored::MessageId,
            ),
            (
                format!("203.0.113.9 1700000000000 {digest}"),
                Ignored::MessageId,
            ),
            (
                format!("{ID} +1700000000000 {digest}"),
                Ignored::SentTimestamp,
            ),
            (
                format!("{ID} 1700000000000.5 {digest}"),
                Ignored::SentTimestamp,
            ),
            (
                format!("{ID} 1700000000000 {}", digest.to_uppercase()),
                Ignored::Body,
            ),
            (
                format!("{ID} 1700000000000 {}", &digest[..63]),
                Ignored::Body,
            ),
        ] {
            assert_eq!(original(&value, BODY), Err(why), "{value}");
            let text = why.to_string();
            assert!(
                !text.contains("203.0.113.9") && !text.contains(ID),
                "{text}"
            );
        }
        let longest = "a".repeat(128);
        let value = mark(&longest, "1700000000000", BODY);
        assert_eq!(original(&value, BODY).unwrap().message_id, longest);
    }
}
