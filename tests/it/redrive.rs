//! Issue 24, 3: a message sent back from the dead-letter queue (a new messageId, a later
//! SentTimestamp, and the attribute `login-etl-redrive-of` that `login-etl-dlq` sets) is the
//! original's row, however often it is sent back, on the INSERT and the COPY path; an attribute
//! made for another body is ignored. Against a real PostgreSQL, through the lean event the
//! function decodes.

use crate::common::*;
use login_etl_core::record::{LeanSqsEvent, LeanSqsMessage};
use login_etl_core::redrive;
use serde_json::{json, Value};

/// The SentTimestamp of `sqs_record`: 2024-11-25 UTC.
const SENT: &str = "1732540000000";
const DAY_MS: u64 = 86_400_000;

/// A record as Lambda delivers it, with `message_attributes`.
fn record(message_id: &str, sent: &str, body: &str, message_attributes: Value) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("AQEB{message_id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": sent,
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": sent
        },
        "messageAttributes": message_attributes,
        "md5OfBody": "7b270e59b47ff90a553787216d55d91d",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:login-queue",
        "awsRegion": "us-east-1"
    })
}

/// The message `original_id` (sent at SENT with `body`) as the dead-letter tool sends it back:
/// delivered for the first time as `new_id`, `days_later` days after the original.
fn redrive(original_id: &str, new_id: &str, days_later: u64, body: &str) -> Value {
    let sent: u64 = SENT.parse().unwrap();
    record(
        new_id,
        &(sent + days_later * DAY_MS).to_string(),
        body,
        json!({
            redrive::ATTRIBUTE: {
                "stringValue": redrive::mark(original_id, SENT, body),
                "stringListValues": [], "binaryListValues": [], "dataType": "String"
            }
        }),
    )
}

/// The records as the function decodes them.
fn lean(records: Vec<Value>) -> Vec<LeanSqsMessage> {
    serde_json::from_value::<LeanSqsEvent>(json!({ "Records": records }))
        .unwrap()
        .records
}

async fn rows(db: &TestDb) -> Vec<(String, String)> {
    db.pairs("SELECT message_id, create_date::text FROM user_logins ORDER BY message_id")
        .await
}

/// A message stored, then sent back twice by the tool (the delete from the dead-letter queue
/// failed, and the operator ran the redrive again), three and four days later: one row, under
/// the original's id and date; each redrive counted as a duplicate. A redrive is reported under
/// the id SQS delivered it with.
#[tokio::test]
async fn a_stored_message_redriven_twice_is_still_its_one_row() {
    let (db, processor) = TestDb::with_processor().await;
    let original = lean(vec![record("orig", SENT, GOOD_BODY, json!({}))]);
    let first = processor.process(&original, in_seconds(10)).await.unwrap();
    assert_eq!((first.stored, first.duplicates), (1, 0));
    for (new_id, days_later) in [("redrive-1", 3), ("redrive-1", 3), ("redrive-2", 4)] {
        let again = lean(vec![redrive("orig", new_id, days_later, GOOD_BODY)]);
        let outcome = processor.process(&again, in_seconds(10)).await.unwrap();
        assert!(failed_ids(&outcome).is_empty(), "{:?}", outcome.failures);
        assert_eq!((outcome.stored, outcome.duplicates), (0, 1), "{new_id}");
    }
    assert_eq!(rows(&db).await, [("orig".into(), "2024-11-25".into())]);

    // Never stored before (the database refused it): the first redrive stores it under the
    // original's identity, the second is a duplicate of it.
    let body = body_with("user_id", Some(json!("never-stored")));
    for expected in [(1, 0), (0, 1)] {
        let outcome = processor
            .process(
                &lean(vec![redrive("dead", "sent-back", 1, &body)]),
                in_seconds(10),
            )
            .await
            .unwrap();
        assert_eq!((outcome.stored, outcome.duplicates), expected);
    }
    assert_eq!(db.count().await, 2);
    assert!(db.stored_message_ids().await.contains(&"dead".to_owned()));

    // The database refuses a redrive: SQS hears of the id it delivered.
    db.refuse_banned_user().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let outcome = processor
        .process(
            &lean(vec![redrive("orig-banned", "new-banned", 1, &banned)]),
            in_seconds(10),
        )
        .await
        .unwrap();
    assert_eq!(failed_ids(&outcome), ["new-banned"]);
    assert_eq!(
        outcome.failures[0].redrive_of.as_deref(),
        Some("orig-banned")
    );
}

/// From 100 rows the store writes by COPY, looking up only the ids that may be stored already:
/// a redrive arrives with ApproximateReceiveCount 1 but is looked up under its original's id,
/// and a batch holding an original and its redrive is one row.
#[tokio::test]
async fn redrives_in_a_copied_batch_are_their_originals_rows() {
    let (db, processor) = TestDb::with_processor().await;
    let bodies: Vec<String> = (0..150)
        .map(|i| body_with("user_id", Some(json!(format!("user-{i:03}")))))
        .collect();
    let originals: Vec<Value> = (0..150)
        .map(|i| record(&format!("orig-{i:03}"), SENT, &bodies[i], json!({})))
        .collect();
    let stored = processor
        .process(&lean(originals[..100].to_vec()), in_seconds(10))
        .await
        .unwrap();
    assert_eq!(stored.stored, 100);
    // Redrives of the 100 stored ones, and the 50 others each with its redrive beside it.
    let mut batch: Vec<Value> = (0..100)
        .map(|i| {
            redrive(
                &format!("orig-{i:03}"),
                &format!("new-{i:03}"),
                2,
                &bodies[i],
            )
        })
        .collect();
    for i in 100..150 {
        batch.push(redrive(
            &format!("orig-{i:03}"),
            &format!("new-{i:03}"),
            2,
            &bodies[i],
        ));
        batch.push(originals[i].clone());
    }
    let outcome = processor
        .process(&lean(batch), in_seconds(10))
        .await
        .unwrap();
    assert!(failed_ids(&outcome).is_empty(), "{:?}", outcome.failures);
    assert_eq!((outcome.stored, outcome.duplicates), (50, 150));
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 150);
    assert!(rows
        .iter()
        .all(|(id, date)| id.starts_with("orig-") && date == "2024-11-25"));
}

/// The guard, against the database: a producer that copied a redriven message's attributes
/// onto its next message (another login) does not merge the two; the next is stored under its
/// own id and date.
#[tokio::test]
async fn an_attribute_copied_onto_another_login_does_not_merge_it_with_the_original() {
    let (db, processor) = TestDb::with_processor().await;
    let original = lean(vec![record("orig", SENT, GOOD_BODY, json!({}))]);
    processor.process(&original, in_seconds(10)).await.unwrap();
    let mut copied = redrive("orig", "next", 1, GOOD_BODY);
    copied["body"] = json!(body_with("user_id", Some(json!("someone-else"))));
    let outcome = processor
        .process(&lean(vec![copied]), in_seconds(10))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (1, 0));
    assert_eq!(
        rows(&db).await,
        [
            ("next".into(), "2024-11-26".into()),
            ("orig".into(), "2024-11-25".into())
        ]
    );
}
