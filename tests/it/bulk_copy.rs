//! Large batches go by binary COPY instead of the INSERT (see docs/benchmarks.md); they must keep
//! every promise of the INSERT path: the same rows, idempotency on messageId with new rows told
//! from redeliveries, isolation of rows the database refuses, FIFO order.

use crate::common::*;
use aws_lambda_events::event::sqs::SqsMessage;
use login_etl::budget::{measure, Step};
use login_etl::handler::HandlerError;
use login_etl::store::{Store, StoreOptions};
use login_etl_core::batch::{plan_batch, BatchError};
use login_etl_core::fifo::QueueKind;
use login_etl_core::mask::Masker;
use serde_json::json;

/// Comfortably above the size from which the store uses COPY.
const LARGE: usize = 250;

#[tokio::test]
async fn a_large_batch_stores_the_same_rows_as_a_small_one() {
    let (db, processor) = TestDb::with_processor().await;
    let small = processor
        .process(&[sqs_record("small", GOOD_BODY)], in_seconds(10))
        .await
        .unwrap();
    let large = processor
        .process(&good_batch("large", 0..LARGE), in_seconds(10))
        .await
        .unwrap();
    assert_eq!((small.stored, large.stored), (1, LARGE));
    assert!(large.failures.is_empty());
    let client = db.client().await;
    let distinct: i64 = client
        .query_one(
            "SELECT count(DISTINCT (user_id, device_type, masked_ip, masked_device_id, locale,
                                    app_version, create_date, mask_key_id))
             FROM user_logins",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 1, "every column equal on both paths");
    let masked_ip: String = client
        .query_one(
            "SELECT masked_ip FROM user_logins WHERE message_id = 'large-00007'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(masked_ip, expected_mask("199.172.111.135"));
    assert_eq!(db.count().await, 1 + LARGE as i64);
}

/// The same records as SQS redelivers them: `ApproximateReceiveCount` above 1.
fn redelivered(mut records: Vec<SqsMessage>) -> Vec<SqsMessage> {
    for record in &mut records {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
    }
    records
}

#[tokio::test]
async fn redeliveries_in_a_large_batch_are_successes_not_rows() {
    let (db, processor) = TestDb::with_processor().await;
    let first = processor
        .process(&good_batch("m", 0..LARGE), in_seconds(10))
        .await
        .unwrap();
    assert_eq!(first.stored, LARGE);
    // 100 of the first batch again, 200 new ones, and one id twice in the batch.
    let mut records = redelivered(good_batch("m", 150..LARGE));
    records.extend(good_batch("m", LARGE..450));
    records.push(sqs_record("m-00300", GOOD_BODY));
    let second = processor.process(&records, in_seconds(10)).await.unwrap();
    assert!(second.failures.is_empty());
    assert_eq!(
        (second.received, second.stored, second.duplicates),
        (301, 200, 101)
    );
    assert_eq!(db.count().await, 450);
}

#[tokio::test]
async fn a_stored_message_marked_as_a_first_delivery_is_still_a_duplicate() {
    // The first-delivery hint spares the lookup; if it is wrong (SQS delivered a message twice
    // at once, or a hand-made event), the COPY hits the unique index and the INSERT takes over.
    let (db, processor) = TestDb::with_processor().await;
    processor
        .process(&good_batch("m", 0..LARGE), in_seconds(10))
        .await
        .unwrap();
    let again = processor
        .process(&good_batch("m", 100..350), in_seconds(10))
        .await
        .unwrap();
    assert!(again.failures.is_empty());
    assert_eq!((again.stored, again.duplicates), (100, 150));
    assert_eq!(db.count().await, 350);
}

#[tokio::test]
async fn an_id_repeated_in_the_rows_given_to_the_store_is_stored_once() {
    let db = TestDb::new().await;
    let masker = Masker::new(KEY.as_bytes()).unwrap();
    let records = good_batch("m", 0..LARGE);
    let plan = plan_batch(&records, &masker, time::OffsetDateTime::now_utc().date()).unwrap();
    let mut rows = plan.rows.clone();
    rows.push(rows[17].clone());
    let store = Store::connect(db.config(), StoreOptions::default(), in_seconds(10))
        .await
        .unwrap();
    let report = store
        .write(&rows, &plan.key_ids, in_seconds(10), QueueKind::Standard)
        .await
        .unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.inserted, report.already_stored), (LARGE, 1));
    assert_eq!(db.count().await, LARGE as i64);
}

#[tokio::test]
async fn rows_refused_in_a_large_batch_are_isolated() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let processor = db.processor().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let mut records = good_batch("m", 0..LARGE);
    for i in [3, 190] {
        records[i] = sqs_record(&format!("m-{i:05}"), &banned);
    }
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(failed_ids(&outcome), ["m-00003", "m-00190"]);
    assert!(
        outcome.failures[0]
            .reason
            .to_string()
            .contains("no_banned_users"),
        "{}",
        outcome.failures[0].reason
    );
    assert_eq!(outcome.stored, LARGE - 2);
    assert_eq!(db.count().await, (LARGE - 2) as i64);
}

#[tokio::test]
async fn a_large_fifo_batch_stops_at_the_first_refused_row() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let processor = db.processor().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let records: Vec<_> = (0..LARGE)
        .map(|i| {
            let id = format!("m-{i:05}");
            sqs_record_on(
                "login-queue.fifo",
                &id,
                if i == 200 { &banned } else { GOOD_BODY },
            )
        })
        .collect();
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(outcome.failures.len(), LARGE - 200);
    assert_eq!(failed_ids(&outcome)[0], "m-00200");
    let stored = db.stored_message_ids().await;
    assert_eq!(stored.len(), 200);
    assert_eq!(stored.last().map(String::as_str), Some("m-00199"));
}

#[tokio::test]
async fn a_large_batch_with_a_record_without_message_id_stores_nothing() {
    // Rows stream to the database while the batch is planned; a record that fails the whole
    // batch must still be found before any row is written, however late it comes.
    let (db, processor) = TestDb::with_processor().await;
    let mut records = good_batch("m", 0..LARGE);
    records[LARGE - 1].message_id = None;
    let error = processor
        .process(&records, in_seconds(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            HandlerError::Batch(BatchError::MissingMessageId { position, .. }) if position == LARGE - 1
        ),
        "{error:?}"
    );
    assert_eq!(db.count().await, 0);
}

#[tokio::test]
async fn a_large_fifo_batch_stops_at_the_first_invalid_message() {
    // The plan holds back everything after an invalid message while earlier rows already
    // stream to the database: only the rows before it may be stored.
    let (db, processor) = TestDb::with_processor().await;
    let records: Vec<_> = (0..LARGE)
        .map(|i| {
            let id = format!("m-{i:05}");
            sqs_record_on(
                "login-queue.fifo",
                &id,
                if i == 150 { "not json" } else { GOOD_BODY },
            )
        })
        .collect();
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(failed_ids(&outcome)[0], "m-00150");
    assert_eq!(outcome.failures.len(), LARGE - 150);
    // One invalid message; the rest of its (one) group held back behind it.
    assert_eq!(
        (outcome.stored, outcome.invalid, outcome.held_back),
        (150, 1, LARGE - 151)
    );
    let stored = db.stored_message_ids().await;
    assert_eq!(stored.len(), 150);
    assert_eq!(stored.last().map(String::as_str), Some("m-00149"));
}

#[tokio::test]
async fn a_batch_time_budget_names_the_steps_each_write_took() {
    // What the shapes benchmark's time budget reads (src/budget.rs): a large batch's time goes
    // to the COPY's steps and the commit (and to the lookup when it has redeliveries), a small
    // one's to the INSERT and the commit, and the steps add up to no more than the whole.
    let (_db, processor) = TestDb::with_processor().await;
    let started = std::time::Instant::now();
    let (large, budget) =
        measure(processor.process(&good_batch("large", 0..LARGE), in_seconds(10))).await;
    let elapsed = started.elapsed();
    assert_eq!(large.unwrap().stored, LARGE);
    for step in [
        Step::Plan,
        Step::CopyStart,
        Step::CopyRows,
        Step::CopyEnd,
        Step::Commit,
        Step::Report,
    ] {
        assert!(!budget.spent(step).is_zero(), "{step:?}: {budget:?}");
    }
    // First deliveries: nothing to look up.
    for step in [Step::Insert, Step::Lookup] {
        assert!(budget.spent(step).is_zero(), "{step:?}: {budget:?}");
    }
    assert!(budget.total() <= elapsed, "{budget:?} in {elapsed:?}");

    let (again, budget) =
        measure(processor.process(&redelivered(good_batch("large", 0..LARGE)), in_seconds(10)))
            .await;
    assert_eq!(again.unwrap().duplicates, LARGE);
    assert!(!budget.spent(Step::Lookup).is_zero(), "{budget:?}");

    let (small, budget) =
        measure(processor.process(&[sqs_record("small", GOOD_BODY)], in_seconds(10))).await;
    assert_eq!(small.unwrap().stored, 1);
    for step in [Step::Plan, Step::Insert, Step::Commit] {
        assert!(!budget.spent(step).is_zero(), "{step:?}: {budget:?}");
    }
    for step in [Step::CopyStart, Step::CopyRows, Step::CopyEnd] {
        assert!(budget.spent(step).is_zero(), "{step:?}: {budget:?}");
    }
}
