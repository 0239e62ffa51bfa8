//! The function's job against a real PostgreSQL: rows, failure IDs, idempotency, schema upgrade,
//! and a database that goes away.

use crate::common::*;
use login_etl::handler::HandlerError;
use login_etl::store::StatementMode;
use login_etl::store::{Store, StoreError, StoreOptions, MIGRATIONS};
use login_etl_core::failure::Reason;
use serde_json::json;

#[tokio::test]
async fn a_clean_batch_becomes_masked_rows() {
    let (db, processor) = TestDb::with_processor().await;
    let records = vec![
        sqs_record("m-1", GOOD_BODY),
        sqs_record("m-2", &body_with("locale", Some(json!(null)))),
        sqs_record("m-3", &body_with("app_version", Some(json!("0.96")))),
        sqs_record(
            "m-4",
            &body_with("ip", Some(json!("2001:0DB8:0:0:0:0:0:0001"))),
        ),
        sqs_record("m-5", &body_with("locale", Some(json!("")))),
        sqs_record(
            "m-6",
            &body_with("ip", Some(json!("::ffff:199.172.111.135"))),
        ),
        sqs_record(
            "m-7",
            &body_with(
                "user_id",
                Some(json!(" 424cdd21-063a-43a7-b91b-7ca1a833afae\t")),
            ),
        ),
    ];
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert!(failed_ids(&outcome).is_empty());
    assert_eq!(
        (outcome.received, outcome.stored, outcome.duplicates),
        (7, 7, 0)
    );

    let client = db.client().await;
    let rows = client
        .query(
            "SELECT message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                    create_date::text, app_version_text(app_version)
             FROM user_logins ORDER BY message_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 7);
    let first = &rows[0];
    assert_eq!(
        first.get::<_, &str>("user_id"),
        "424cdd21-063a-43a7-b91b-7ca1a833afae"
    );
    assert_eq!(first.get::<_, &str>("device_type"), "android");
    assert_eq!(
        first.get::<_, &str>("masked_ip"),
        expected_mask("199.172.111.135")
    );
    assert_eq!(
        first.get::<_, &str>("masked_device_id"),
        expected_mask("593-47-5928")
    );
    assert_eq!(first.get::<_, Option<&str>>("locale"), Some("RU"));
    assert_eq!(first.get::<_, i32>("app_version"), 2_003_000);
    // SentTimestamp 1732540000000 ms is 2024-11-25 UTC.
    assert_eq!(first.get::<_, &str>("create_date"), "2024-11-25");
    assert_eq!(first.get::<_, &str>("app_version_text"), "2.3.0");
    assert_eq!(rows[1].get::<_, Option<&str>>("locale"), None);
    assert_eq!(rows[2].get::<_, i32>("app_version"), 96_000);
    assert_eq!(
        rows[3].get::<_, &str>("masked_ip"),
        expected_mask("2001:db8::1")
    );
    // An empty locale is unknown, like null.
    assert_eq!(rows[4].get::<_, Option<&str>>("locale"), None);
    // An IPv4-mapped IPv6 address is its IPv4 address.
    assert_eq!(
        rows[5].get::<_, &str>("masked_ip"),
        expected_mask("199.172.111.135")
    );
    // Surrounding whitespace is trimmed from every field, user_id too.
    assert_eq!(
        rows[6].get::<_, &str>("user_id"),
        "424cdd21-063a-43a7-b91b-7ca1a833afae"
    );
    // Equal values mask equally, so duplicates can still be found.
    assert_eq!(
        rows[0].get::<_, &str>("masked_device_id"),
        rows[1].get::<_, &str>("masked_device_id")
    );
}

#[tokio::test]
async fn bad_records_are_reported_and_the_rest_of_the_batch_is_stored() {
    let (db, processor) = TestDb::with_processor().await;
    let bad: Vec<(&str, String)> = vec![
        ("not-json", "this is not json".into()),
        ("empty-body", "".into()),
        (
            "wrong-message-type",
            r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.into(),
        ),
        ("missing-ip", body_with("ip", None)),
        ("wrong-type", body_with("app_version", Some(json!(2.3)))),
        (
            "too-long",
            body_with("device_type", Some(json!("x".repeat(33)))),
        ),
        ("bad-ip", body_with("ip", Some(json!("999.1.2.3")))),
        ("json-array", format!("[{GOOD_BODY}]")),
        (
            "bad-app-version",
            body_with("app_version", Some(json!("2.3.0-beta"))),
        ),
        ("nul-byte", body_with("user_id", Some(json!("a\u{0}b")))),
    ];
    let mut records = vec![sqs_record("good-1", GOOD_BODY)];
    records.extend(bad.iter().map(|(id, body)| sqs_record(id, body)));
    records.push(sqs_record("good-2", GOOD_BODY));

    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    let mut expected: Vec<String> = bad.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(failed_ids(&outcome), expected);
    assert_eq!(db.stored_message_ids().await, ["good-1", "good-2"]);
    assert_eq!((outcome.invalid, outcome.stored), (bad.len(), 2));
    // Every reason names the problem; none quotes the body.
    for failure in &outcome.failures {
        assert!(matches!(failure.reason, Reason::Rejected(_)));
        let text = failure.reason.to_string();
        assert!(
            !text.contains("199.172") && !text.contains("593-47"),
            "{}",
            failure.reason
        );
    }
    expected.sort();
}

#[tokio::test]
async fn a_redelivered_batch_adds_no_rows_and_reports_success() {
    let (db, processor) = TestDb::with_processor().await;
    let records: Vec<_> = (0..20)
        .map(|i| sqs_record(&format!("m-{i:02}"), GOOD_BODY))
        .collect();
    let first = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(first.stored, 20);
    let again = processor.process(&records, in_seconds(10)).await.unwrap();
    assert!(failed_ids(&again).is_empty());
    assert_eq!((again.stored, again.duplicates), (0, 20));
    // Half old, half new, and one messageId twice in the same batch.
    let mut mixed: Vec<_> = (10..30)
        .map(|i| sqs_record(&format!("m-{i:02}"), GOOD_BODY))
        .collect();
    mixed.push(sqs_record("m-29", GOOD_BODY));
    let third = processor.process(&mixed, in_seconds(10)).await.unwrap();
    assert_eq!((third.stored, third.duplicates), (10, 11));
    assert_eq!(db.count().await, 30);
}

#[tokio::test]
async fn duplicate_sends_of_the_same_body_are_separate_logins() {
    let (db, processor) = TestDb::with_processor().await;
    let records = vec![
        sqs_record("send-1", GOOD_BODY),
        sqs_record("send-2", GOOD_BODY),
    ];
    processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(db.count().await, 2);
}

#[tokio::test]
async fn the_take_home_table_is_upgraded_in_place() {
    let db = TestDb::empty().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE user_logins(
                 user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
                 masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date);
             INSERT INTO user_logins VALUES ('old-user', 'ios', 'abc', 'def', NULL, 2, '2020-01-01'),
                                            ('old-user', 'ios', 'abc', 'def', NULL, 2, '2020-01-01');",
        )
        .await
        .unwrap();
    // Before the migrations the function refuses to start, and says what to do.
    let error = Store::connect(db.config(), StoreOptions::default(), in_seconds(10))
        .await
        .err()
        .expect("no schema, no store");
    assert!(matches!(error, StoreError::Schema(_)), "{error}");
    assert!(
        error.to_string().contains("apply migrations/*.sql"),
        "{error}"
    );

    for _ in 0..2 {
        for sql in MIGRATIONS {
            client
                .batch_execute(sql)
                .await
                .expect("migrations apply twice");
        }
    }
    let processor = db.processor().await;
    let outcome = processor
        .process(&[sqs_record("new-1", GOOD_BODY)], in_seconds(10))
        .await
        .unwrap();
    assert_eq!(outcome.stored, 1);
    let rows = client
        .query(
            "SELECT user_id, message_id FROM user_logins ORDER BY user_id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [
            (
                "424cdd21-063a-43a7-b91b-7ca1a833afae".to_string(),
                Some("new-1".to_string())
            ),
            ("old-user".to_string(), None),
            ("old-user".to_string(), None),
        ]
    );
    let readable: String = client
        .query_one(
            "SELECT app_version FROM user_logins_readable WHERE message_id = 'new-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(readable, "2.3.0");
}

/// Writes set their server-side deadline with migration 004's function; without it the function
/// refuses to start, in either statement mode, and says what to apply.
#[tokio::test]
async fn a_schema_without_the_deadline_function_is_refused_naming_its_migration() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("DROP FUNCTION login_etl_write_deadline(integer)")
        .await
        .unwrap();
    for statement_mode in [StatementMode::Prepared, StatementMode::Unnamed] {
        let options = StoreOptions {
            statement_mode,
            ..StoreOptions::default()
        };
        let error = Store::connect(db.config(), options, in_seconds(10))
            .await
            .err()
            .expect("no deadline function, no store");
        assert!(matches!(error, StoreError::Schema(_)), "{error}");
        assert!(
            error
                .to_string()
                .contains("migrations/004_write_deadline.sql"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn auto_migrate_creates_the_schema() {
    let db = TestDb::empty().await;
    let migrate = StoreOptions {
        migrate: true,
        ..StoreOptions::default()
    };
    // Twice, as two cold starts would.
    for _ in 0..2 {
        Store::connect(db.config(), migrate, in_seconds(10))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rows_the_database_refuses_are_isolated_and_reported() {
    refused_rows_are_isolated(StatementMode::Prepared).await;
}

#[tokio::test]
async fn with_unnamed_statements_refused_rows_are_isolated_too() {
    refused_rows_are_isolated(StatementMode::Unnamed).await;
}

async fn refused_rows_are_isolated(mode: StatementMode) {
    let (db, processor) = TestDb::with_processor_sending(mode).await;
    db.refuse_banned_user().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let records: Vec<_> = (0..40)
        .map(|i| {
            sqs_record(
                &format!("m-{i:02}"),
                if i == 7 || i == 31 {
                    &banned
                } else {
                    GOOD_BODY
                },
            )
        })
        .collect();
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(failed_ids(&outcome), ["m-07", "m-31"]);
    assert!(
        outcome.failures[0]
            .reason
            .to_string()
            .contains("SQLSTATE 23514"),
        "{}",
        outcome.failures[0].reason
    );
    assert!(
        outcome.failures[0]
            .reason
            .to_string()
            .contains("no_banned_users"),
        "{}",
        outcome.failures[0].reason
    );
    assert_eq!(outcome.stored, 38);
    assert_eq!(db.count().await, 38);
}

#[tokio::test]
async fn fifo_batches_stop_at_the_first_row_the_database_refuses() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let processor = db.processor().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let records: Vec<_> = (0..8)
        .map(|i| {
            sqs_record_on(
                "login-queue.fifo",
                &format!("m-{i}"),
                if i == 5 { &banned } else { GOOD_BODY },
            )
        })
        .collect();
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(failed_ids(&outcome), ["m-5", "m-6", "m-7"]);
    assert_eq!(
        db.stored_message_ids().await,
        ["m-0", "m-1", "m-2", "m-3", "m-4"]
    );
}

/// Order matters within a FIFO message group only: a refused row (g1) and an invalid message
/// (g2) hold back the later messages of their own group; the other groups' messages, before and
/// after them, are stored.
#[tokio::test]
async fn fifo_groups_interleaved_in_a_batch_flow_independently() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let processor = db.processor().await;
    let banned = body_with("user_id", Some(json!("banned")));
    // (id, group, body): g1 1-3, g2 1-3 and g3 1-2 interleaved.
    let batch = [
        ("g1-1", "g1", GOOD_BODY),
        ("g2-1", "g2", GOOD_BODY),
        ("g3-1", "g3", GOOD_BODY),
        ("g1-2", "g1", banned.as_str()),
        ("g2-2", "g2", "not a login"),
        ("g3-2", "g3", GOOD_BODY),
        ("g1-3", "g1", GOOD_BODY),
        ("g2-3", "g2", GOOD_BODY),
    ];
    let records: Vec<_> = batch
        .iter()
        .map(|(id, group, body)| fifo_record(id, group, body))
        .collect();
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(failed_ids(&outcome), ["g1-2", "g2-2", "g1-3", "g2-3"]);
    let held_back: Vec<&str> = outcome
        .failures
        .iter()
        .filter(|f| f.reason == Reason::HeldBack)
        .map(|f| f.message_id.as_str())
        .collect();
    assert_eq!(held_back, ["g1-3", "g2-3"]);
    assert_eq!(
        db.stored_message_ids().await,
        ["g1-1", "g2-1", "g3-1", "g3-2"]
    );
}

fn fifo_record(id: &str, group: &str, body: &str) -> aws_lambda_events::event::sqs::SqsMessage {
    let mut record = sqs_record_on("login-queue.fifo", id, body);
    record
        .attributes
        .insert("MessageGroupId".into(), group.into());
    record
}

#[tokio::test]
async fn a_database_that_goes_away_fails_the_batch_and_recovers_without_a_restart() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(server_port()).await;
    let config = login_etl::store::DatabaseConfig::from_url(&proxy.url_for(&db)).unwrap();
    let processor = processor_on(config).await;
    let batch = |prefix: &str| -> Vec<_> {
        (0..5)
            .map(|i| sqs_record(&format!("{prefix}-{i}"), GOOD_BODY))
            .collect()
    };

    assert_eq!(
        processor
            .process(&batch("before"), in_seconds(10))
            .await
            .unwrap()
            .stored,
        5
    );

    proxy.cut();
    let error = processor
        .process(&batch("during"), in_seconds(10))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HandlerError::Store(StoreError::Unavailable(_))),
        "{error}"
    );
    assert!(error.to_string().contains("retried"), "{error}");
    assert_eq!(
        db.count().await,
        5,
        "nothing of the failed batch was stored"
    );

    proxy.restore();
    let outcome = processor
        .process(&batch("during"), in_seconds(10))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.failures.len()), (5, 0));
    assert_eq!(db.count().await, 10);
}

#[tokio::test]
async fn a_connection_killed_between_invocations_is_reopened() {
    let (db, processor) = TestDb::with_processor().await;
    processor
        .process(&[sqs_record("a", GOOD_BODY)], in_seconds(10))
        .await
        .unwrap();
    db.client()
        .await
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ))
        .await
        .unwrap();
    let outcome = processor
        .process(&[sqs_record("b", GOOD_BODY)], in_seconds(10))
        .await
        .unwrap();
    assert_eq!(outcome.stored, 1);
    assert_eq!(db.stored_message_ids().await, ["a", "b"]);
}
