//! End to end through LocalStack's own Lambda service and its own SQS event source mapping, on
//! the host without Docker (`make test` starts LocalStack with the project's local runtime
//! executor, localstack/executor): the function is deployed with `CreateFunction` (the debug
//! build, or the arm64 zip users deploy, run through qemu), fed by `CreateEventSourceMapping`
//! with ReportBatchItemFailures, and writes to a real PostgreSQL. Redelivery, partial batch
//! failures and the dead-letter queue are LocalStack's implementation, not ours. Each test has
//! its own queues, database and function.
//!
//! Where LocalStack differs from AWS (docs/localstack.md, docs/ESM.md), the test says so: its mapping
//! re-serialises every message body, so what depends on a body's exact bytes is sent by a direct
//! invoke; for a FIFO queue it invokes the function once per message group of a batch.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use crate::common::lambda::{Code, Function, Mapping, MappingSettings};
use crate::common::localstack::{self, TestQueue};
use crate::common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// The message that is not a login event, as it appears in the real stream.
const NOT_A_LOGIN: &str = r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#;
/// Bound on anything that takes seconds; a test that reaches it fails and shows the function's log.
const PATIENCE: Duration = Duration::from_secs(180);

/// The visibility timeout of the queues whose tests count dead letters. A message whose
/// invocation outlives it is received again, and each receive counts toward maxReceiveCount: with
/// 2 s, an invocation slowed by the whole suite running on 2 cores sent a message that had been
/// stored to the dead-letter queue. 5 s is far above any invocation seen here and keeps the way
/// of a bad message to the dead-letter queue (maxReceiveCount times this) short.
const VISIBILITY_SECS: u32 = 5;

/// A valid login body, different for every `n`, in the shapes real traffic has.
fn login_body(n: usize) -> String {
    let versions = ["2.3.0", "0.96", "2.00", "9.10", "3.7"];
    let ip = if n.is_multiple_of(7) {
        format!("2001:db8::{:x}", n + 1)
    } else {
        format!("198.51.100.{}", n % 250 + 1)
    };
    json!({
        "user_id": format!("{n:08x}-063a-43a7-b91b-{n:012x}"),
        "app_version": versions[n % versions.len()],
        "device_type": if n.is_multiple_of(2) { "android" } else { "ios" },
        "ip": ip,
        "locale": if n.is_multiple_of(3) { Value::Null } else { json!("RU") },
        "device_id": format!("{:03}-{:02}-{:04}", n % 1000, n % 100, n),
    })
    .to_string()
}

/// The function on LocalStack's Lambda, writing to `database_url`, started by one empty
/// invocation before any message's visibility timeout starts running.
async fn function_on(prefix: &str, code: Code, database_url: &str) -> Function {
    let function = Function::deploy(
        prefix,
        code,
        &[("DATABASE_URL", database_url), ("MASKING_KEY", KEY)],
    )
    .await;
    function.warm_up().await;
    function
}

/// Waits until `check` holds; fails with the function's log after PATIENCE.
async fn eventually<F, Fut>(what: &str, function: &Function, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; the function said:\n{}",
            function.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `name=value` of a log line, as a number.
fn field(line: &str, name: &str) -> usize {
    let start = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The realistic stream: the bodies of events/stream-*.json, in order (99 logins and one message
/// that is not a login event).
fn sample_stream() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("stream-") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    let mut bodies = Vec::new();
    for file in files {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for record in event["Records"].as_array().unwrap() {
            bodies.push(record["body"].as_str().unwrap().to_owned());
        }
    }
    bodies
}

/// The zip users deploy (`make build`: arm64, OpenSSL inside), run by LocalStack's Lambda
/// through qemu, fed the sample stream by LocalStack's mapping: 99 rows with their masks
/// recomputed here, the one message that is not a login in the dead-letter queue after 2
/// receives, and an empty queue.
#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_zip_turns_the_sample_stream_into_99_rows_and_one_dead_letter() {
    let bodies = sample_stream();
    let bad: Vec<usize> = (0..bodies.len())
        .filter(|&i| bodies[i] == NOT_A_LOGIN)
        .collect();
    assert_eq!(
        (bodies.len(), bad.len()),
        (100, 1),
        "events/stream-*.json changed"
    );
    let db = TestDb::new().await;
    let function = function_on("login-etl-arm64", Code::Arm64Zip, &db.url).await;
    // As deployed: a dead-letter queue (here after 2 receives); a visibility timeout far above
    // an invocation under qemu on a loaded machine (see VISIBILITY_SECS).
    let queue = TestQueue::standard("login-queue", 2 * VISIBILITY_SECS, Some(2)).await;
    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;
    let ids = queue.send_all(&bodies).await;

    eventually("an empty queue, one dead letter", &function, || async {
        queue.depth().await == (0, 0, 0) && queue.dead_letter_depth().await.0 == 1
    })
    .await;

    let mut good = ids.clone();
    let bad_id = good.remove(bad[0]);
    assert_eq!(db.stored_message_ids().await, sorted(good));
    assert_eq!(
        queue.dead_letters().await,
        [(bad_id, NOT_A_LOGIN.to_owned())]
    );
    // Every row holds the masks of its own message's values, recomputed here.
    let body_of: HashMap<&String, Value> = ids
        .iter()
        .zip(&bodies)
        .map(|(id, body)| (id, serde_json::from_str(body).unwrap()))
        .collect();
    let rows = db
        .client()
        .await
        .query(
            "SELECT message_id, masked_ip, masked_device_id FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 99);
    for row in rows {
        let body = &body_of[&row.get::<_, String>(0)];
        let ip: std::net::IpAddr = body["ip"].as_str().unwrap().parse().unwrap();
        let device_id = body["device_id"].as_str().unwrap().trim();
        assert_eq!(row.get::<_, String>(1), expected_mask(&ip.to_string()));
        assert_eq!(row.get::<_, String>(2), expected_mask(device_id));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_body_sent_twice_is_two_logins() {
    let db = TestDb::new().await;
    let function = function_on("login-twice", Code::DebugBinary, &db.url).await;
    let queue = TestQueue::standard("login-twice", 5, None).await;
    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;
    let body = login_body(7);
    let ids = queue.send_all(&[body.clone(), body]).await;
    assert_ne!(ids[0], ids[1], "SQS gives every send its own messageId");

    eventually("two rows", &function, || async { db.count().await == 2 }).await;
    assert_eq!(db.stored_message_ids().await, sorted(ids));
    let distinct_masks: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT (masked_ip, masked_device_id)) FROM user_logins",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct_masks, 1);
}

/// SQS delivers a message again when its visibility timeout runs out while a function still
/// works on it. Two functions (two mappings on one queue, as during a blue/green switch) get the
/// same messages while the table is locked, so both hold them at once; each message is one row.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_to_two_functions_at_once_is_stored_once() {
    let db = TestDb::new().await;
    let blue = function_on("login-blue", Code::DebugBinary, &db.url).await;
    let green = function_on("login-green", Code::DebugBinary, &db.url).await;
    // A visibility timeout of 1 s, far shorter than the lock below.
    let queue = TestQueue::standard("login-redelivered", 1, None).await;
    let lock = db.lock_the_table().await;
    let _blue_mapping = Mapping::create(&queue, &blue, MappingSettings::default()).await;
    let _green_mapping = Mapping::create(&queue, &green, MappingSettings::default()).await;
    let ids = queue
        .send_all(&(0..3).map(login_body).collect::<Vec<_>>())
        .await;

    // Both functions are waiting on the lock with the messages (received at least twice).
    let waiting = || async {
        db.client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1",
                &[&db.name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            >= 2
    };
    eventually("both functions waiting on the lock", &blue, waiting).await;
    drop(lock);

    eventually("an empty queue", &blue, || async {
        queue.depth().await == (0, 0, 0)
    })
    .await;
    assert_eq!(db.stored_message_ids().await, sorted(ids));
    let received: usize = [&blue, &green]
        .iter()
        .flat_map(|f| f.lines_with("batch processed"))
        .map(|line| field(&line, "received"))
        .sum();
    assert!(received > 3, "no message was delivered twice: {received}");
    let duplicates: usize = [&blue, &green]
        .iter()
        .flat_map(|f| f.lines_with("batch processed"))
        .map(|line| field(&line, "duplicates"))
        .sum();
    assert!(duplicates > 0, "no redelivery was recognised as stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_valid_message_lands_once_when_postgres_drops_out_mid_stream() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(server_port()).await;
    let function = function_on("login-outage", Code::DebugBinary, &proxy.url_for(&db)).await;
    // Three receives before the dead-letter queue: an outage must not send good messages there.
    let queue = TestQueue::standard("login-outage", VISIBILITY_SECS, Some(3)).await;
    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;

    let mut sent = queue
        .send_all(&(0..20).map(login_body).collect::<Vec<_>>())
        .await;
    eventually("the first 20 rows", &function, || async {
        db.count().await == 20
    })
    .await;

    proxy.cut();
    let mut bodies: Vec<String> = (20..40).map(login_body).collect();
    bodies.insert(10, NOT_A_LOGIN.to_owned());
    let mut during = queue.send_all(&bodies).await;
    eventually(
        "a batch failing while PostgreSQL is away",
        &function,
        || async { !function.lines_with("batch failed").is_empty() },
    )
    .await;
    proxy.restore();
    eventually("an empty queue", &function, || async {
        queue.depth().await == (0, 0, 0)
    })
    .await;

    let bad = during.remove(10);
    sent.extend(during);
    assert_eq!(
        db.stored_message_ids().await,
        sorted(sent),
        "{}",
        function.log()
    );
    assert_eq!(
        queue.dead_letters().await,
        [(bad, NOT_A_LOGIN.to_owned())],
        "{}",
        function.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_queue_keeps_each_group_in_order_and_a_failure_stops_only_its_own_group() {
    let db = TestDb::new().await;
    let function = function_on("login-fifo", Code::DebugBinary, &db.url).await;
    let queue = TestQueue::fifo("login-fifo", VISIBILITY_SECS, Some(2)).await;
    // A1 B1 A2 B2 ... A5 B5, where B3 is not a login event.
    let mut names = Vec::new();
    let mut id_of = HashMap::new();
    for n in 1..=5 {
        for group in ["A", "B"] {
            let name = format!("{group}{n}");
            let body = if name == "B3" {
                NOT_A_LOGIN.to_owned()
            } else {
                login_body(names.len())
            };
            let id = queue.send_to_group(group, &name, &body).await;
            id_of.insert(name.clone(), id);
            names.push(name);
        }
    }
    let name_of: HashMap<String, String> = id_of
        .iter()
        .map(|(name, id)| (id.clone(), name.clone()))
        .collect();
    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;

    eventually("an empty queue, three dead letters", &function, || async {
        queue.depth().await == (0, 0, 0) && queue.dead_letter_depth().await.0 == 3
    })
    .await;

    // Group A went through; group B stopped at B3: B4 and B5 were never written ahead of it,
    // and, retried with B3 as often as B3, they reached the dead-letter queue behind it.
    let stored: Vec<String> = ["A1", "A2", "A3", "A4", "A5", "B1", "B2"]
        .iter()
        .map(|n| id_of[*n].clone())
        .collect();
    assert_eq!(
        db.stored_message_ids().await,
        sorted(stored),
        "{}",
        function.log()
    );
    let dead: Vec<String> = queue
        .dead_letters()
        .await
        .into_iter()
        .map(|(id, _)| name_of[&id].clone())
        .collect();
    assert_eq!(dead, ["B3", "B4", "B5"]);

    // Rows of a group were written in the group's order: each batch is one transaction, so a
    // row's xmin orders the batches.
    let rows = db
        .client()
        .await
        .query(
            "SELECT message_id, xmin::text::bigint FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    let written_in: HashMap<String, i64> = rows
        .iter()
        .map(|r| (name_of[&r.get::<_, String>(0)].clone(), r.get(1)))
        .collect();
    for group in [["A1", "A2", "A3", "A4", "A5"].as_slice(), &["B1", "B2"]] {
        let order: Vec<i64> = group.iter().map(|n| written_in[*n]).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "{group:?} written out of order: {order:?}"
        );
    }

    // The function reported B3 and held back the B messages after it, and nothing of group A.
    let not_stored: Vec<String> = function
        .lines_with("message not stored")
        .iter()
        .filter_map(|line| {
            let id = line
                .split("message_id=")
                .nth(1)?
                .split_whitespace()
                .next()?;
            Some(name_of[id.trim_matches('"')].clone())
        })
        .collect();
    assert!(
        not_stored.iter().all(|n| n.starts_with('B')),
        "{not_stored:?}"
    );
    for name in ["B3", "B4", "B5"] {
        assert!(
            not_stored.iter().any(|n| n == name),
            "{name}: {not_stored:?}"
        );
    }
}

/// LocalStack's mapping rewrites every body (`json.loads`, then `json.dumps`: spacing, escapes,
/// number spelling), so a duplicate key collapses on the way; AWS passes the bytes as sent. The
/// function refuses a body whose key appears twice: sent by a direct invoke through LocalStack's
/// Invoke API, which passes the event as it is, it is refused by name. Tests of exact bytes
/// (hostile_input.rs, events.rs) invoke directly for that reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_key_is_refused_by_direct_invoke_and_collapsed_by_localstacks_mapping() {
    let db = TestDb::new().await;
    let function = function_on("login-bytes", Code::DebugBinary, &db.url).await;
    let twice = GOOD_BODY.replacen('{', r#"{"user_id": "someone-else", "#, 1);

    let event = json!({"Records": [sqs_record("direct-1", &twice)]}).to_string();
    let answer = function.invoke(&event).await;
    assert_eq!(answer.function_error, None, "{:?}", answer.payload);
    assert_eq!(
        answer.payload,
        json!({"batchItemFailures": [{"itemIdentifier": "direct-1"}]})
    );
    assert!(
        function
            .lines_with("message not stored")
            .iter()
            .any(|l| l.contains("direct-1") && l.contains("appears twice")),
        "{}",
        function.log()
    );

    let queue = TestQueue::standard("login-bytes", 5, None).await;
    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;
    let ids = queue.send_all(&[twice]).await;
    eventually("the collapsed body stored", &function, || async {
        db.count().await == 1
    })
    .await;
    assert_eq!(db.stored_message_ids().await, ids);
}

/// A configuration the function refuses at start (a MASKING_KEY shorter than 32 bytes) reaches
/// whoever invokes it through LocalStack's Invoke API as a function error naming the variable,
/// never its value; no row is written and the environment is not left running.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_is_an_init_error_through_localstacks_api() {
    let db = TestDb::new().await;
    let short_key = "too-short-key-value";
    let function = Function::deploy(
        "login-badconfig",
        Code::DebugBinary,
        &[("DATABASE_URL", &db.url), ("MASKING_KEY", short_key)],
    )
    .await;
    let event = json!({"Records": [sqs_record("m-1", GOOD_BODY)]}).to_string();
    let answer = function.invoke(&event).await;
    assert!(answer.function_error.is_some(), "{:?}", answer.payload);
    let text = answer.payload.to_string();
    assert!(text.contains("MASKING_KEY"), "{text}");
    assert!(!text.contains(short_key), "the value is shown: {text}");
    assert_eq!(db.count().await, 0);
}

/// Runs `login-etl-dlq` on LocalStack's SQS: (success, stdout, stderr).
async fn dlq_tool(args: &[&str]) -> (bool, String, String) {
    dlq_tool_at(&localstack::endpoint(), args).await
}

/// Runs `login-etl-dlq` on the SQS endpoint `endpoint` (LocalStack's, or a proxy in front of it).
async fn dlq_tool_at(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(built_binary(
        "login-etl-dlq",
        "cargo build -p login-etl-dlq",
    ))
    .args(["--endpoint-url", endpoint])
    .args(args)
    .envs(localstack::ENV.iter().copied())
    .output()
    .await
    .expect("login-etl-dlq runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The id `login-etl-dlq redrive` reports for `id` in the source queue (`moved <id> as <new>`).
fn sent_back_as(report: &str, id: &str) -> String {
    let prefix = format!("moved {id} as ");
    report
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{id} not moved: {report}"))
        .to_owned()
}

/// An operator's dead letters: one message the function cannot read, and one the database
/// refused (a rule since removed). `login-etl-dlq list` says why each is there without deleting
/// anything or showing a value. Then the refused one is sent back three times (issue 24, 3): by
/// `redrive --message-id` twice, each time through an SQS that refuses the delete from the
/// dead-letter queue (so it is sent back and still a dead letter, and the tool says so), then by
/// `redrive --all`, which also sends the unreadable one back. Three copies with three new
/// messageIds, each carrying `login-etl-redrive-of`: one row, under the original's id. The
/// unreadable one is dead again, listed as a redrive of its original.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_explained_without_values_and_redriven_into_one_row_however_often() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let function = function_on("login-dlq", Code::DebugBinary, &db.url).await;
    let queue = TestQueue::standard("login-dlq", VISIBILITY_SECS, Some(1)).await;
    // Written as Python's json.dumps writes it: LocalStack's mapping re-serialises every body so
    // (docs/ESM.md), and the redrive attribute binds the body's exact bytes; on AWS the body
    // reaches the function as it was sent.
    let banned = r#"{"user_id": "banned", "app_version": "2.3.0", "device_type": "ios", "ip": "203.0.113.9", "locale": "RU", "device_id": "123-45-6789"}"#;
    let sent = queue
        .send_all(&[login_body(1), NOT_A_LOGIN.to_owned(), banned.to_owned()])
        .await;
    let (good, unreadable, refused) = (&sent[0], &sent[1], &sent[2]);
    let mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;
    eventually("an empty queue, two dead letters", &function, || async {
        queue.depth().await == (0, 0, 0) && queue.dead_letter_depth().await.0 == 2
    })
    .await;
    // The mapping stops here, so that the redriven messages below wait in the queue.
    drop(mapping);
    assert_eq!(db.stored_message_ids().await, std::slice::from_ref(good));
    let dlq = queue.dlq_url.clone().unwrap();

    let (ok, listed, errors) = dlq_tool(&["--dlq-url", &dlq, "list"]).await;
    assert!(ok, "{errors}");
    let line_of = |listed: &str, id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
            .to_owned()
    };
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        line_of(&listed, unreadable).contains("refused: "),
        "{listed}"
    );
    assert!(
        line_of(&listed, refused).contains("passes validation now"),
        "{listed}"
    );
    for line in listed.lines() {
        assert!(
            line.contains("receives=") && line.contains("first_sent=20"),
            "{line}"
        );
    }
    for value in [
        "banned",
        "203.0.113.9",
        "123-45-6789",
        "oops_wrong_msg_type",
    ] {
        assert!(!listed.contains(value), "a value is shown: {listed}");
    }
    eventually("both dead letters visible again", &function, || async {
        queue.dead_letter_depth().await == (2, 0, 0)
    })
    .await;

    // The rule is gone: the refused message now passes. It is sent back, but the delete from the
    // dead-letter queue fails; the tool says so and makes it visible again at once, and the
    // operator runs the redrive again (the same failure, a second copy).
    db.client()
        .await
        .batch_execute("ALTER TABLE user_logins DROP CONSTRAINT no_banned_users")
        .await
        .unwrap();
    let no_deletes = localstack::RefusingProxy::start("DeleteMessageBatch").await;
    for _ in 0..2 {
        let (ok, report, errors) = dlq_tool_at(
            &no_deletes.url,
            &["--dlq-url", &dlq, "redrive", "--message-id", refused],
        )
        .await;
        assert!(!ok, "the delete was refused, yet: {report}");
        assert!(
            errors.contains(refused.as_str())
                && errors.contains("redriving them again is harmless"),
            "{errors}"
        );
        assert_eq!(queue.dead_letter_depth().await.0, 2, "{errors}");
    }
    drop(no_deletes);
    assert_eq!(
        queue.depth().await.0,
        2,
        "two copies of the refused message"
    );

    // Everything back: the refused message a third time, and the unreadable one.
    let (ok, report, errors) = dlq_tool(&["--dlq-url", &dlq, "redrive", "--all"]).await;
    assert!(ok, "{report} {errors}");
    assert!(report.starts_with("moved 2 messages back"), "{report}");
    let unreadable_again = sent_back_as(&report, unreadable);
    sent_back_as(&report, refused);
    assert_eq!(queue.dead_letter_depth().await.0, 0, "{report}");
    assert_eq!(queue.depth().await.0, 4, "{report}");

    let _mapping = Mapping::create(&queue, &function, MappingSettings::default()).await;
    eventually(
        "three copies stored as one row, the unreadable one dead again",
        &function,
        || async {
            db.count().await == 2
                && queue.depth().await == (0, 0, 0)
                && queue.dead_letter_depth().await.0 == 1
        },
    )
    .await;
    assert_eq!(
        db.stored_message_ids().await,
        sorted(vec![good.clone(), refused.clone()]),
        "the row is under the original's id; the function said:\n{}",
        function.log()
    );
    let tally = |name: &str| -> usize {
        function
            .lines_with("batch processed")
            .iter()
            .map(|line| field(line, name))
            .sum()
    };
    // The good message and one copy stored; the other two copies are duplicates (more, should
    // SQS deliver a copy twice).
    assert_eq!(tally("stored"), 2, "the function said:\n{}", function.log());
    assert!(
        tally("duplicates") >= 2,
        "the function said:\n{}",
        function.log()
    );
    assert!(
        function
            .lines_with("message not stored")
            .iter()
            .any(|l| l.contains(unreadable_again.as_str())
                && l.contains(&format!("redrive_of={unreadable}"))),
        "the function said:\n{}",
        function.log()
    );
    let (ok, listed, errors) = dlq_tool(&["--dlq-url", &dlq, "list"]).await;
    assert!(ok, "{errors}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let line = line_of(&listed, &unreadable_again);
    assert!(
        line.contains(&format!("redrive_of={unreadable}")) && line.contains("refused: "),
        "{listed}"
    );
}
