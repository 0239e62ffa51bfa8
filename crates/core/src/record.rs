//! What the planner reads of an SQS record, and the lean event the function deserializes. Pure.
//!
//! `aws_lambda_events`' `SqsEvent` keeps every field of every record: the receipt handle, the
//! body's MD5, the region, a map of all system attributes and one of the message attributes,
//! each an allocation. The planner reads five of them. Deserializing a 1,000-record event into
//! `SqsEvent` was most of what the deployed binary adds to the handler's time
//! (docs/benchmarks.md, "The deployed binary against the in-process handler"), so the function
//! deserializes `LoginEvents`, which keeps only those five and skips the rest unparsed into
//! values. Tests, the local event source mapping and the dead-letter tool keep using
//! `SqsMessage`: the planner takes either, through `SqsRecord`.

use aws_lambda_events::event::sqs::SqsMessage;
use serde::Deserialize;

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
}

/// The SQS event as the function reads it: the records, with what the planner needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoginEvents {
    #[serde(rename = "Records")]
    pub records: Vec<LoginRecord>,
}

/// One SQS record, keeping only what the planner reads; other fields are skipped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRecord {
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, rename = "eventSourceARN")]
    pub event_source_arn: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: LoginRecordAttributes,
}

/// The system attributes the planner reads; SQS sends more, which are skipped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginRecordAttributes {
    #[serde(default)]
    pub sent_timestamp: Option<String>,
    #[serde(default)]
    pub approximate_receive_count: Option<String>,
    #[serde(default)]
    pub message_group_id: Option<String>,
}

/// `"attributes": null` reads as none, as `SqsMessage` reads it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl SqsRecord for LoginRecord {
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
         "messageAttributes": {"k": {"stringValue": "v", "dataType": "String"}},
         "md5OfBody": "x", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:0:q.fifo", "awsRegion": "us-east-1"},
        {"messageId": null, "body": null, "attributes": null}
    ]}"#;

    fn fields(record: &impl SqsRecord) -> [Option<&str>; 6] {
        [
            record.message_id(),
            record.body(),
            record.event_source_arn(),
            record.sent_timestamp(),
            record.approximate_receive_count(),
            record.message_group_id(),
        ]
    }

    #[test]
    fn the_lean_record_reads_what_sqs_message_reads() {
        let lean: LoginEvents = serde_json::from_str(EVENT).unwrap();
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
            ]
        );
        assert_eq!(fields(&lean.records[1]), [None; 6]);
    }
}
