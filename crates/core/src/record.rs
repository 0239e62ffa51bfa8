//! What the planner reads of an SQS record, and the lean event the function deserializes. Pure.
//!
//! `aws_lambda_events`' `SqsEvent` keeps every field of every record: the receipt handle, the
//! body's MD5, the region, a map of all system attributes and one of the message attributes,
//! each an allocation. The planner reads seven values of them (messageId, body, eventSourceARN,
//! the attributes SentTimestamp, ApproximateReceiveCount and MessageGroupId, and the one message
//! attribute the dead-letter tool sets, `login-etl-redrive-of`, `redrive.rs`). Deserializing a
//! 1,000-record event into `SqsEvent` was most of what the deployed binary adds to the handler's time
//! (docs/benchmarks.md, "The deployed binary against the in-process handler"), so the function
//! deserializes `LeanSqsEvent`, which keeps only those and skips the rest unparsed into
//! values. Tests and the dead-letter tool keep using
//! `SqsMessage`: the planner takes either, through `SqsRecord`.

use aws_lambda_events::event::sqs::SqsMessage;
use serde::de;
use serde::Deserialize;

use crate::redrive::ATTRIBUTE as REDRIVE_ATTRIBUTE;

/// The fields of an SQS record the planner reads.
pub trait SqsRecord: Sync {
    fn message_id(&self) -> Option<&str>;
    fn body(&self) -> Option<&str>;
    fn event_source_arn(&self) -> Option<&str>;
    /// `SentTimestamp`: milliseconds since 1970, as text.
    fn sent_timestamp(&self) -> Option<&str>;
    fn approximate_receive_count(&self) -> Option<&str>;
    /// `MessageGroupId`, on FIFO queues.
    fn message_group_id(&self) -> Option<&str>;
    /// The `stringValue` of the message attribute `login-etl-redrive-of`, which the dead-letter
    /// tool sets on a message it sends back (`redrive.rs`); what it says is honoured only when
    /// it passes the guard there.
    fn redrive_of(&self) -> Option<&str>;
    /// Why the record is not shaped as an SQS record (a path and the expected type, no value);
    /// such a record fails alone.
    fn malformed(&self) -> Option<&str> {
        None
    }
}

impl SqsRecord for SqsMessage {
    fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
    fn event_source_arn(&self) -> Option<&str> {
        self.event_source_arn.as_deref()
    }
    fn sent_timestamp(&self) -> Option<&str> {
        self.attributes.get("SentTimestamp").map(String::as_str)
    }
    fn approximate_receive_count(&self) -> Option<&str> {
        self.attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str)
    }
    fn message_group_id(&self) -> Option<&str> {
        self.attributes.get("MessageGroupId").map(String::as_str)
    }
    fn redrive_of(&self) -> Option<&str> {
        self.message_attributes
            .get(REDRIVE_ATTRIBUTE)
            .and_then(|attribute| attribute.string_value.as_deref())
    }
}

/// The SQS event as the function reads it: the records, with what the planner needs.
///
/// Decoding fails only when the event itself is not an object with a `Records` array. A record
/// that is not an object, or a field of the wrong JSON type, decodes into a `LeanSqsMessage` whose
/// `malformed` names the path and what was expected, so that the record fails alone (as a
/// malformed body does) and no error quotes the value: serde's own type errors do
/// (`invalid type: string "203.0.113.77 ...", expected struct`), and lambda_runtime logs them at
/// ERROR and returns them in the error response (issue 22).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeanSqsEvent {
    #[serde(rename = "Records", deserialize_with = "records")]
    pub records: Vec<LeanSqsMessage>,
}

/// One SQS record, keeping only what the planner reads; other fields are skipped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Shaped<RawRecord>")]
pub struct LeanSqsMessage {
    pub message_id: Option<String>,
    pub body: Option<String>,
    pub event_source_arn: Option<String>,
    pub attributes: LeanSqsAttributes,
    /// `messageAttributes.login-etl-redrive-of.stringValue`; every other message attribute is
    /// skipped.
    pub redrive_of: Option<String>,
    /// Why the record is not an SQS record as Lambda delivers them (its path and the expected
    /// type, never the value); `None` when it is one.
    pub malformed: Option<String>,
}

/// The system attributes the planner reads; SQS sends more, which are skipped.
#[derive(Debug, Clone, Default)]
pub struct LeanSqsAttributes {
    pub sent_timestamp: Option<String>,
    pub approximate_receive_count: Option<String>,
    pub message_group_id: Option<String>,
}

/// How SQS writes `SentTimestamp`, the rule every other form is refused by.
pub const SENT_TIMESTAMP_FORM: &str =
    "it must be milliseconds since 1970 as a string of decimal digits, as SQS sends it";

/// The milliseconds of a `SentTimestamp` written as SQS writes it (decimal digits, nothing else),
/// or `None`. 15 digits reach the year 33658: anything longer is not a date SQS could write.
pub fn sent_timestamp_millis(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A record as it came, each field as it was shaped.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    #[serde(default)]
    message_id: Text,
    #[serde(default)]
    body: Text,
    #[serde(default, rename = "eventSourceARN")]
    event_source_arn: Text,
    #[serde(default)]
    attributes: Shaped<RawAttributes>,
    #[serde(default)]
    message_attributes: Shaped<RawMessageAttributes>,
}

/// The message attributes the planner reads: only the dead-letter tool's.
#[derive(Default, Deserialize)]
struct RawMessageAttributes {
    #[serde(default, rename = "login-etl-redrive-of")]
    redrive_of: Shaped<RawMessageAttribute>,
}

/// One message attribute as Lambda delivers it: `{"stringValue": ..., "dataType": "String", ...}`;
/// only the string value is read.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessageAttribute {
    #[serde(default)]
    string_value: Text,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttributes {
    #[serde(default)]
    sent_timestamp: Text,
    #[serde(default)]
    approximate_receive_count: Text,
    #[serde(default)]
    message_group_id: Text,
}

impl From<Shaped<RawRecord>> for LeanSqsMessage {
    fn from(record: Shaped<RawRecord>) -> Self {
        let record = match record {
            Shaped::Absent => {
                return LeanSqsMessage {
                    malformed: Some(
                        "the record is null; an SQS record (an object) was expected".into(),
                    ),
                    ..LeanSqsMessage::default()
                }
            }
            Shaped::Other(kind) => {
                return LeanSqsMessage {
                    malformed: Some(format!(
                        "the record is {kind}; an SQS record (an object) was expected"
                    )),
                    ..LeanSqsMessage::default()
                }
            }
            Shaped::Object(record) => record,
        };
        let mut problems: Vec<String> = Vec::new();
        let mut text = |path: &str, field: Text, rule: &str| -> Option<String> {
            match field {
                Text::Absent => None,
                Text::String(text) => Some(text),
                Text::Other(kind) => {
                    problems.push(format!("{path} is {kind}; {rule}"));
                    None
                }
            }
        };
        const A_STRING: &str = "a string was expected";
        const AN_OBJECT: &str = "an object was expected";
        let message_id = text("messageId", record.message_id, A_STRING);
        let body = text("body", record.body, A_STRING);
        let event_source_arn = text("eventSourceARN", record.event_source_arn, A_STRING);
        let attributes = match record.attributes {
            Shaped::Absent => LeanSqsAttributes::default(),
            Shaped::Other(kind) => {
                text("attributes", Text::Other(kind), AN_OBJECT);
                LeanSqsAttributes::default()
            }
            Shaped::Object(raw) => LeanSqsAttributes {
                sent_timestamp: text(
                    "attributes.SentTimestamp",
                    raw.sent_timestamp,
                    SENT_TIMESTAMP_FORM,
                ),
                approximate_receive_count: text(
                    "attributes.ApproximateReceiveCount",
                    raw.approximate_receive_count,
                    A_STRING,
                ),
                message_group_id: text("attributes.MessageGroupId", raw.message_group_id, A_STRING),
            },
        };
        let redrive_of = match record.message_attributes {
            Shaped::Absent => None,
            Shaped::Other(kind) => text("messageAttributes", Text::Other(kind), AN_OBJECT),
            Shaped::Object(raw) => match raw.redrive_of {
                Shaped::Absent => None,
                Shaped::Other(kind) => text(REDRIVE_PATH, Text::Other(kind), AN_OBJECT),
                Shaped::Object(attribute) => {
                    text(REDRIVE_VALUE_PATH, attribute.string_value, A_STRING)
                }
            },
        };
        LeanSqsMessage {
            message_id,
            body,
            event_source_arn,
            attributes,
            redrive_of,
            malformed: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }
}

/// The paths of the dead-letter tool's attribute, as a reason names them.
const REDRIVE_PATH: &str = "messageAttributes.login-etl-redrive-of";
const REDRIVE_VALUE_PATH: &str = "messageAttributes.login-etl-redrive-of.stringValue";

/// A JSON string, or what came instead; `null` and a missing field are `Absent`.
#[derive(Default)]
enum Text {
    #[default]
    Absent,
    String(String),
    Other(&'static str),
}

/// A JSON object decoded as `T`, or what came instead.
#[derive(Default)]
enum Shaped<T> {
    #[default]
    Absent,
    Object(T),
    Other(&'static str),
}

/// Reads past a value that is not of the expected shape, keeping only its kind.
macro_rules! other_kinds {
    ($other:path) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok($other("an array"))
        }
    };
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text::String(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text, E> {
                Ok(Text::String(text))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Text::Other("an object"))
            }
            other_kinds!(Text::Other);
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shaped<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = Shaped<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shaped<T>, E> {
                Ok(Shaped::Other("a string"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Shaped<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Shaped::Object)
            }
            other_kinds!(Shaped::Other);
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// `Records`: an array, each element decoded on its own; anything else refuses the event, naming
/// what came instead, never its value (serde's own `invalid type` error quotes a string).
fn records<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<LeanSqsMessage>, D::Error> {
    struct Visitor;
    fn refuse<E: de::Error>(kind: &str) -> E {
        E::custom(format_args!(
            "Records is {kind}; an array of SQS records was expected"
        ))
    }
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<LeanSqsMessage>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("Records, an array of SQS records")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(record) = seq.next_element()? {
                records.push(record);
            }
            Ok(records)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(refuse("a string"))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(refuse("an object"))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(refuse("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(refuse("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(refuse("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(refuse("a number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(refuse("null"))
        }
    }
    deserializer.deserialize_any(Visitor)
}

impl SqsRecord for LeanSqsMessage {
    fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
    fn event_source_arn(&self) -> Option<&str> {
        self.event_source_arn.as_deref()
    }
    fn sent_timestamp(&self) -> Option<&str> {
        self.attributes.sent_timestamp.as_deref()
    }
    fn approximate_receive_count(&self) -> Option<&str> {
        self.attributes.approximate_receive_count.as_deref()
    }
    fn message_group_id(&self) -> Option<&str> {
        self.attributes.message_group_id.as_deref()
    }
    fn redrive_of(&self) -> Option<&str> {
        self.redrive_of.as_deref()
    }
    fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    /// An event as the event source mapping sends it, with every field SQS fills.
    const EVENT: &str = r#"{"Records": [
        {"messageId": "m1", "receiptHandle": "AQEB", "body": "{\"user_id\": \"u\"}",
         "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000",
                        "SenderId": "AID", "ApproximateFirstReceiveTimestamp": "1700000000040",
                        "MessageGroupId": "g1"},
         "messageAttributes": {"k": {"stringValue": "v", "dataType": "String"},
                               "login-etl-redrive-of": {"stringValue": "m0 1699999999999 ab",
                                                        "stringListValues": [], "binaryListValues": [],
                                                        "dataType": "String"}},
         "md5OfBody": "x", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:0:q.fifo", "awsRegion": "us-east-1"},
        {"messageId": null, "body": null, "attributes": null}
    ]}"#;

    fn fields(record: &impl SqsRecord) -> [Option<&str>; 7] {
        [
            record.message_id(),
            record.body(),
            record.event_source_arn(),
            record.sent_timestamp(),
            record.approximate_receive_count(),
            record.message_group_id(),
            record.redrive_of(),
        ]
    }

    #[test]
    fn the_lean_record_reads_what_sqs_message_reads() {
        let lean: LeanSqsEvent = serde_json::from_str(EVENT).unwrap();
        let full: SqsEvent = serde_json::from_str(EVENT).unwrap();
        assert_eq!(lean.records.len(), 2);
        for (lean, full) in lean.records.iter().zip(&full.records) {
            assert_eq!(fields(lean), fields(full));
        }
        assert_eq!(
            fields(&lean.records[0]),
            [
                Some("m1"),
                Some(r#"{"user_id": "u"}"#),
                Some("arn:aws:sqs:us-east-1:0:q.fifo"),
                Some("1700000000000"),
                Some("2"),
                Some("g1"),
                Some("m0 1699999999999 ab"),
            ]
        );
        assert_eq!(fields(&lean.records[1]), [None; 7]);
    }

    /// Issue 22, 5: a record or a field of the wrong JSON type fails that record alone, with a
    /// reason naming the path and the expected type, never the value.
    #[test]
    fn a_malformed_record_is_kept_with_a_reason_that_quotes_nothing() {
        const VALUE: &str = "203.0.113.77 123-45-6789";
        let event = format!(
            r#"{{"Records": [
                "{VALUE}",
                {{"messageId": "m2", "body": "{{}}", "attributes": "{VALUE}"}},
                {{"messageId": "m3", "body": "{{}}", "attributes": {{"SentTimestamp": 1700000000000}}}},
                {{"messageId": "m4", "body": ["{VALUE}"], "attributes": {{"ApproximateReceiveCount": {{"x": "{VALUE}"}}}}}},
                {{"messageId": "m5", "body": "{{}}", "attributes": {{"SentTimestamp": "1700000000000"}}}}
            ]}}"#
        );
        let events: LeanSqsEvent = serde_json::from_str(&event).unwrap();
        let malformed: Vec<Option<&str>> = events.records.iter().map(|r| r.malformed()).collect();
        assert_eq!(
            malformed,
            [
                Some("the record is a string; an SQS record (an object) was expected"),
                Some("attributes is a string; an object was expected"),
                Some(&*format!("attributes.SentTimestamp is a number; {SENT_TIMESTAMP_FORM}")),
                Some("body is an array; a string was expected; attributes.ApproximateReceiveCount is an object; a string was expected"),
                None,
            ]
        );
        assert_eq!(events.records[1].message_id(), Some("m2"));
        for refused in [
            format!(r#"{{"Records": "{VALUE}"}}"#),
            format!(r#"{{"Records": {{"a": "{VALUE}"}}}}"#),
        ] {
            let error = serde_json::from_str::<LeanSqsEvent>(&refused)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("Records is"), "{error}");
            assert!(!error.contains("203.0.113.77"), "{error}");
        }
    }

    /// The dead-letter tool's attribute is read as Lambda delivers it; a wrong JSON type fails
    /// the record alone, naming the path and never the value; an attribute of another data type
    /// (no `stringValue`) is no attribute, and the other message attributes are skipped whatever
    /// their shape.
    #[test]
    fn the_redrive_attribute_is_read_with_the_same_care_as_the_rest() {
        const VALUE: &str = "203.0.113.77 123-45-6789";
        let event = format!(
            r#"{{"Records": [
                {{"messageId": "m1", "messageAttributes": {{"other": "{VALUE}", "login-etl-redrive-of": {{"stringValue": "{VALUE}", "dataType": "String"}}}}}},
                {{"messageId": "m2", "messageAttributes": "{VALUE}"}},
                {{"messageId": "m3", "messageAttributes": {{"login-etl-redrive-of": "{VALUE}"}}}},
                {{"messageId": "m4", "messageAttributes": {{"login-etl-redrive-of": {{"stringValue": ["{VALUE}"]}}}}}},
                {{"messageId": "m5", "messageAttributes": {{"login-etl-redrive-of": {{"binaryValue": "AAEC", "dataType": "Binary"}}}}}},
                {{"messageId": "m6", "messageAttributes": null}}
            ]}}"#
        );
        let lean: LeanSqsEvent = serde_json::from_str(&event).unwrap();
        let read: Vec<(Option<&str>, Option<&str>)> = lean
            .records
            .iter()
            .map(|r| (r.redrive_of(), r.malformed()))
            .collect();
        assert_eq!(
            read,
            [
                (Some(VALUE), None),
                (None, Some("messageAttributes is a string; an object was expected")),
                (
                    None,
                    Some("messageAttributes.login-etl-redrive-of is a string; an object was expected")
                ),
                (
                    None,
                    Some("messageAttributes.login-etl-redrive-of.stringValue is an array; a string was expected")
                ),
                (None, None),
                (None, None),
            ]
        );
        // aws_lambda_events' SqsMessage reads the same value.
        let full: SqsMessage = serde_json::from_str(
            &format!(r#"{{"messageId": "m1", "messageAttributes": {{"login-etl-redrive-of": {{"stringValue": "{VALUE}", "dataType": "String"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(full.redrive_of(), Some(VALUE));
    }
}
