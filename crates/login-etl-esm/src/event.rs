//! Received SQS messages -> the `SqsEvent` JSON that Lambda delivers to the function. Pure.
//!
//! The record has exactly the fields of Lambda's documented SQS event, in its order:
//! `messageId, receiptHandle, body, attributes, messageAttributes, md5OfMessageAttributes (only
//! when the message has attributes), md5OfBody, eventSource, eventSourceARN, awsRegion`.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use serde::Serialize;

/// The queue as the event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueIdentity {
    /// `arn:aws:sqs:REGION:ACCOUNT:NAME`, from GetQueueAttributes.
    pub arn: String,
    pub region: String,
}

impl QueueIdentity {
    /// The region is the ARN's fourth field; `fallback` where the ARN has none.
    pub fn from_arn(arn: &str, fallback_region: &str) -> QueueIdentity {
        let region = arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
            .unwrap_or(fallback_region);
        QueueIdentity {
            arn: arn.to_owned(),
            region: region.to_owned(),
        }
    }

    pub fn is_fifo(&self) -> bool {
        self.arn.ends_with(".fifo")
    }
}

/// One received message: what the mapping needs to delete or release it, and its event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    /// `ApproximateReceiveCount`: above 1 the message is a redelivery.
    pub receive_count: u32,
    /// The record, serialized once: its length is what counts against the payload limit.
    pub record_json: String,
}

/// A message SQS returned without the fields a record cannot do without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingField(pub &'static str);

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQS returned a message without {}", self.0)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    attributes: BTreeMap<&'a str, &'a str>,
    message_attributes: BTreeMap<&'a str, Attribute<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<&'a str>,
    md5_of_body: &'a str,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    aws_region: &'a str,
}

/// A message attribute as Lambda writes it: camelCase, binary values in base64, both list
/// fields always present.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Attribute<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    string_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    string_list_values: &'a [String],
    binary_list_values: Vec<String>,
    data_type: &'a str,
}

impl<'a> From<&'a MessageAttributeValue> for Attribute<'a> {
    fn from(value: &'a MessageAttributeValue) -> Self {
        Attribute {
            string_value: value.string_value(),
            binary_value: value
                .binary_value()
                .map(|b| aws_smithy_types::base64::encode(b.as_ref())),
            string_list_values: value.string_list_values(),
            binary_list_values: value
                .binary_list_values()
                .iter()
                .map(|b| aws_smithy_types::base64::encode(b.as_ref()))
                .collect(),
            data_type: value.data_type(),
        }
    }
}

/// The event record for one received message.
pub fn record(message: &Message, queue: &QueueIdentity) -> Result<Received, MissingField> {
    let message_id = message.message_id().ok_or(MissingField("MessageId"))?;
    let receipt_handle = message
        .receipt_handle()
        .ok_or(MissingField("ReceiptHandle"))?;
    let attributes: BTreeMap<&str, &str> = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let receive_count = attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let message_attributes = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str(), Attribute::from(value)))
        .collect::<BTreeMap<_, _>>();
    let record = Record {
        message_id,
        receipt_handle,
        body: message.body().unwrap_or_default(),
        md5_of_message_attributes: message
            .md5_of_message_attributes()
            .filter(|_| !message_attributes.is_empty()),
        attributes,
        message_attributes,
        md5_of_body: message.md5_of_body().unwrap_or_default(),
        event_source: "aws:sqs",
        event_source_arn: &queue.arn,
        aws_region: &queue.region,
    };
    Ok(Received {
        message_id: message_id.to_owned(),
        receipt_handle: receipt_handle.to_owned(),
        receive_count,
        record_json: serde_json::to_string(&record).expect("a record always serializes"),
    })
}

const EVENT_START: &str = "{\"Records\":[";
const EVENT_END: &str = "]}";

/// The invocation payload: `{"Records":[...]}`.
pub fn payload(records: &[Received]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_size(records));
    out.extend_from_slice(EVENT_START.as_bytes());
    for (i, received) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(received.record_json.as_bytes());
    }
    out.extend_from_slice(EVENT_END.as_bytes());
    out
}

/// The exact length of [`payload`] without building it.
pub fn payload_size(records: &[Received]) -> usize {
    let records_len: usize = records.iter().map(|r| r.record_json.len()).sum();
    EVENT_START.len() + records_len + records.len().saturating_sub(1) + EVENT_END.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
    use serde_json::{json, Value};

    fn queue() -> QueueIdentity {
        QueueIdentity::from_arn("arn:aws:sqs:us-east-2:123456789012:my-queue", "eu-west-1")
    }

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("AQEB-{id}"))
            .body(body)
            .md5_of_body("098f6bcd4621d373cade4e832627b4f6")
            .attributes(Attr::ApproximateReceiveCount, "1")
            .attributes(Attr::SentTimestamp, "1545082649183")
            .attributes(Attr::SenderId, "AIDAIENQZJOLO23YVJ4VO")
            .attributes(Attr::ApproximateFirstReceiveTimestamp, "1545082649185")
            .build()
    }

    #[test]
    fn a_record_is_the_one_lambda_documents() {
        let received = record(&message("059f36b4", "test"), &queue()).unwrap();
        let value: Value = serde_json::from_str(&received.record_json).unwrap();
        // AWS's sample SQS event (Lambda developer guide), field for field.
        assert_eq!(
            value,
            json!({
                "messageId": "059f36b4",
                "receiptHandle": "AQEB-059f36b4",
                "body": "test",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185"
                },
                "messageAttributes": {},
                "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
                "awsRegion": "us-east-2"
            })
        );
        // ... and in the documented order.
        let order = [
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        ]
        .map(|key| received.record_json.find(&format!("\"{key}\":")).unwrap());
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{}",
            received.record_json
        );
        assert_eq!(received.message_id, "059f36b4");
        assert_eq!(received.receipt_handle, "AQEB-059f36b4");
        assert_eq!(received.receive_count, 1);
    }

    #[test]
    fn message_attributes_are_written_as_lambda_writes_them() {
        let message = Message::builder()
            .message_id("m")
            .receipt_handle("h")
            .body("b")
            .md5_of_message_attributes("abc")
            .message_attributes(
                "source",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("mobile")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"hi".to_vec()))
                    .build()
                    .unwrap(),
            )
            .build();
        let value: Value =
            serde_json::from_str(&record(&message, &queue()).unwrap().record_json).unwrap();
        assert_eq!(
            value["messageAttributes"],
            json!({
                "blob": {"binaryValue": "aGk=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
                "source": {"stringValue": "mobile", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            })
        );
        assert_eq!(value["md5OfMessageAttributes"], "abc");
    }

    #[test]
    fn fifo_attributes_pass_through() {
        let message = Message::builder()
            .message_id("m")
            .receipt_handle("h")
            .body("b")
            .attributes(Attr::ApproximateReceiveCount, "3")
            .attributes(Attr::MessageGroupId, "user-1")
            .attributes(Attr::SequenceNumber, "18849496460467696128")
            .attributes(Attr::MessageDeduplicationId, "d1")
            .build();
        let fifo = QueueIdentity::from_arn("arn:aws:sqs:us-east-1:1:q.fifo", "x");
        let received = record(&message, &fifo).unwrap();
        let value: Value = serde_json::from_str(&received.record_json).unwrap();
        assert_eq!(value["attributes"]["MessageGroupId"], "user-1");
        assert_eq!(
            value["attributes"]["SequenceNumber"],
            "18849496460467696128"
        );
        assert_eq!(received.receive_count, 3);
        assert!(fifo.is_fifo() && !queue().is_fifo());
    }

    #[test]
    fn the_payload_is_an_sqs_event_the_function_reads() {
        let records: Vec<_> = [message("a", "x"), message("b", "{\"y\": 1}")]
            .iter()
            .map(|m| record(m, &queue()).unwrap())
            .collect();
        let bytes = payload(&records);
        assert_eq!(bytes.len(), payload_size(&records));
        assert_eq!(payload_size(&[]), payload(&[]).len());
        let event: SqsEvent = serde_json::from_slice(&bytes).unwrap();
        let ids: Vec<_> = event
            .records
            .iter()
            .map(|r| r.message_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(event.records[1].body.as_deref(), Some("{\"y\": 1}"));
        assert_eq!(
            event.records[0].attributes["SentTimestamp"],
            "1545082649183"
        );
    }

    #[test]
    fn a_message_without_id_or_handle_has_no_record() {
        let no_id = Message::builder().receipt_handle("h").build();
        assert_eq!(
            record(&no_id, &queue()).unwrap_err(),
            MissingField("MessageId")
        );
        let no_handle = Message::builder().message_id("m").build();
        assert_eq!(
            record(&no_handle, &queue()).unwrap_err().to_string(),
            "SQS returned a message without ReceiptHandle"
        );
    }

    #[test]
    fn the_region_comes_from_the_arn() {
        assert_eq!(queue().region, "us-east-2");
        assert_eq!(
            QueueIdentity::from_arn("arn:aws:sqs::1:q", "eu-west-1").region,
            "eu-west-1"
        );
    }
}
