//! A corpus of hostile message bodies through the real handler and a real PostgreSQL: each one
//! ends as a stored row or a reported failure with a reason, never a panic, and the good
//! messages around it are stored.

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::json;

/// What must become of a case.
enum Expect {
    Stored,
    /// Reported, with a reason containing this text.
    Failed(&'static str),
}
use Expect::{Failed, Stored};

fn corpus() -> Vec<(&'static str, String, Expect)> {
    let with = |field: &str, value: serde_json::Value| body_with(field, Some(value));
    let without = |field: &str| body_with(field, None);
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let mut cases: Vec<(&'static str, String, Expect)> = vec![
        // Not JSON at all.
        ("empty body", String::new(), Failed("empty")),
        ("whitespace body", "  \n\t ".into(), Failed("empty")),
        ("plain text", "hello".into(), Failed("not valid JSON")),
        ("truncated object", r#"{"user_id": "a""#.into(), Failed("not valid JSON")),
        ("trailing garbage", format!("{GOOD_BODY} trailing"), Failed("not valid JSON")),
        ("two objects", format!("{GOOD_BODY}{GOOD_BODY}"), Failed("not valid JSON")),
        ("single quotes", GOOD_BODY.replace('"', "'"), Failed("not valid JSON")),
        ("invalid escape", r#"{"user_id": "\q"}"#.into(), Failed("not valid JSON")),
        ("lone surrogate escape", with("user_id", json!("x")).replace(r#""x""#, r#""\ud800""#), Failed("not valid JSON")),
        ("raw control character in string", with("user_id", json!("x")).replace(r#""x""#, "\"a\u{1}b\""), Failed("not valid JSON")),
        ("byte order mark", format!("\u{feff}{GOOD_BODY}"), Failed("")),
        ("NaN literal", with("user_id", json!("x")).replace(r#""x""#, "NaN"), Failed("not valid JSON")),
        ("deep nesting in unknown field", with("extra", json!(null)).replace("null", &deep(10_000)), Stored),
        ("deep nesting as body", deep(100_000), Failed("")),
        // JSON, but not a login event.
        ("wrong message type", r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.into(), Failed("user_id")),
        ("empty object", "{}".into(), Failed("missing")),
        ("array of events", format!("[{GOOD_BODY}]"), Failed("not a JSON object")),
        ("string body", "\"a string\"".into(), Failed("not a JSON object")),
        ("number body", "12345".into(), Failed("not a JSON object")),
        ("null body", "null".into(), Failed("not a JSON object")),
        ("every field null", r#"{"user_id":null,"app_version":null,"device_type":null,"ip":null,"locale":null,"device_id":null}"#.into(), Failed("missing")),
        ("duplicate key", GOOD_BODY.replacen('{', r#"{"ip": "1.2.3.4", "#, 1), Failed("appears twice")),
        ("event wrapped in an envelope", format!(r#"{{"Message": {GOOD_BODY}}}"#), Failed("missing")),
        ("event as an escaped string", serde_json::to_string(GOOD_BODY).unwrap(), Failed("not a JSON object")),
        // Missing fields.
        ("missing user_id", without("user_id"), Failed("`user_id` is missing")),
        ("missing app_version", without("app_version"), Failed("`app_version` is missing")),
        ("missing device_type", without("device_type"), Failed("`device_type` is missing")),
        ("missing ip", without("ip"), Failed("`ip` is missing")),
        ("missing device_id", without("device_id"), Failed("`device_id` is missing")),
        // Types.
        ("number where string belongs", with("user_id", json!(42)), Failed("found a number")),
        ("boolean ip", with("ip", json!(true)), Failed("found a boolean")),
        ("object device_id", with("device_id", json!({"id": "x"})), Failed("found an object")),
        ("array locale", with("locale", json!(["RU"])), Failed("found an array")),
        ("numeric app_version", with("app_version", json!(2.3)), Failed("found a number")),
        ("huge number app_version", with("app_version", json!(1e308)), Failed("found a number")),
        // Lengths and characters.
        ("user_id of 129 characters", with("user_id", json!("u".repeat(129))), Failed("longer than 128")),
        ("device_type of 33 characters", with("device_type", json!("d".repeat(33))), Failed("longer than 32")),
        ("locale of 33 characters", with("locale", json!("l".repeat(33))), Failed("longer than 32")),
        ("device_id of 257 characters", with("device_id", json!("9".repeat(257))), Failed("longer than 256")),
        ("body of 256 KiB in an unknown field", with("padding", json!("p".repeat(256 * 1024 - 300))), Stored),
        ("user_id of 256 KiB", with("user_id", json!("u".repeat(256 * 1024 - 300))), Failed("longer than 128")),
        ("NUL byte escaped", with("user_id", json!("a\u{0}b")), Failed("control character")),
        ("newline in device_type", with("device_type", json!("and\nroid")), Failed("control character")),
        ("escape sequence in locale", with("locale", json!("\u{1b}[31mRU")), Failed("control character")),
        ("empty user_id", with("user_id", json!("")), Failed("`user_id` is empty")),
        ("blank device_id", with("device_id", json!("   ")), Failed("`device_id` is empty")),
        // Addresses.
        ("ip with leading zeros", with("ip", json!("010.001.002.003")), Failed("not an IPv4 or IPv6")),
        ("ip out of range", with("ip", json!("256.1.1.1")), Failed("not an IPv4 or IPv6")),
        ("ip with port", with("ip", json!("1.2.3.4:80")), Failed("not an IPv4 or IPv6")),
        ("ip with CIDR suffix", with("ip", json!("10.0.0.0/8")), Failed("not an IPv4 or IPv6")),
        ("hostname as ip", with("ip", json!("example.com")), Failed("not an IPv4 or IPv6")),
        ("IPv6 with zone id", with("ip", json!("fe80::1%eth0")), Failed("not an IPv4 or IPv6")),
        ("ip of 70 characters", with("ip", json!("1".repeat(70))), Failed("longer than 64")),
        ("IPv4-mapped IPv6", with("ip", json!("::ffff:199.172.111.135")), Stored),
        ("uppercase IPv6", with("ip", json!("2001:DB8::1")), Stored),
        ("ip with surrounding whitespace", with("ip", json!(" 199.172.111.135 ")), Stored),
        // app_version.
        ("app_version with suffix", with("app_version", json!("2.3.0-beta")), Failed("app_version")),
        ("app_version with four parts", with("app_version", json!("1.2.3.4")), Failed("app_version")),
        ("app_version part over 999", with("app_version", json!("1000.0")), Failed("app_version")),
        ("app_version negative", with("app_version", json!("-1.0")), Failed("app_version")),
        ("app_version empty part", with("app_version", json!("2..3")), Failed("app_version")),
        ("app_version with v prefix", with("app_version", json!("v2.3")), Failed("app_version")),
        // Odd but valid: stored as sent.
        ("SQL fragment in user_id", with("user_id", json!("'); DROP TABLE user_logins; --")), Stored),
        ("unicode user_id", with("user_id", json!("用户-😀-ü")), Stored),
        ("32 multibyte characters in device_type", with("device_type", json!("é".repeat(32))), Stored),
        ("surrounding whitespace in device_id", with("device_id", json!("  593-47-5928  ")), Stored),
        ("unknown extra fields", with("referrer", json!({"a": [1, 2, {"b": null}]})), Stored),
        ("escaped characters in user_id", with("user_id", json!("quote\" backslash\\ slash/")), Stored),
        ("app_version with leading zeros", with("app_version", json!("02.003")), Stored),
        ("app_version single part", with("app_version", json!("7")), Stored),
    ];
    cases.push(("locale null", with("locale", json!(null)), Stored));
    cases
}

#[tokio::test]
async fn every_hostile_body_ends_as_a_row_or_a_reported_failure() {
    let cases = corpus();
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());
    let (db, processor) = TestDb::with_processor().await;

    let mut records = Vec::new();
    for (i, (_, body, _)) in cases.iter().enumerate() {
        records.push(sqs_record(&format!("case-{i:03}"), body));
        records.push(sqs_record(&format!("good-{i:03}"), GOOD_BODY));
    }
    let outcome = processor
        .process(&records, in_seconds(60))
        .await
        .expect("no batch-level failure");

    let stored: BTreeSet<String> = db.stored_message_ids().await.into_iter().collect();
    for (i, (name, _, expect)) in cases.iter().enumerate() {
        let id = format!("case-{i:03}");
        let failure = outcome.failures.iter().find(|f| f.message_id == id);
        match (expect, failure, stored.contains(&id)) {
            (Stored, None, true) => {}
            (Failed(reason), Some(failure), false) => {
                assert!(
                    failure.reason.to_string().contains(reason),
                    "{name}: reason {:?} lacks {reason:?}",
                    failure.reason
                )
            }
            (_, failure, in_table) => panic!("{name}: reported {failure:?}, stored {in_table}"),
        }
        assert!(
            stored.contains(&format!("good-{i:03}")),
            "{name}: the good message next to it was not stored"
        );
    }
    // Exactly one place for every message.
    assert_eq!(stored.len() + outcome.failures.len(), records.len());
}

/// Issue 22, 7: one rule for SentTimestamp, whatever its form and date, applied per record: the
/// digits SQS writes, dated no more than a day ahead of today (UTC) and, with RETAIN_DAYS, not
/// before the days the partition job keeps. Before, `"+<ms>"` was accepted, `" <ms>"` refused,
/// a JSON number failed the whole batch and any date was stored.
#[tokio::test]
async fn sent_timestamps_are_held_to_one_rule_record_by_record() {
    let (db, processor) = TestDb::with_processor().await;
    let processor = processor.with_retain_days(Some(30));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    const DAY: i64 = 86_400_000;
    let record = |id: &str, sent: serde_json::Value| {
        json!({"messageId": id, "body": GOOD_BODY,
               "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:login-queue",
               "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent}})
    };
    let event = json!({"Records": [
        record("now", json!(now_ms.to_string())),
        record("plus-sign", json!(format!("+{now_ms}"))),
        record("leading-space", json!(format!(" {now_ms}"))),
        record("json-number", json!(now_ms)),
        record("in-a-week", json!((now_ms + 7 * DAY).to_string())),
        record("past-retention", json!((now_ms - 40 * DAY).to_string())),
        record("within-retention", json!((now_ms - 20 * DAY).to_string())),
    ]});
    let events: login_etl_core::record::LeanSqsEvent = serde_json::from_value(event).unwrap();
    let outcome = processor
        .process(&events.records, in_seconds(10))
        .await
        .expect("no record fails the whole batch");
    assert_eq!(
        failed_ids(&outcome),
        [
            "plus-sign",
            "leading-space",
            "json-number",
            "in-a-week",
            "past-retention"
        ]
    );
    for failure in &outcome.failures {
        assert!(
            failure.reason.to_string().contains("SentTimestamp")
                && !failure
                    .reason
                    .to_string()
                    .contains(&now_ms.to_string()[..8]),
            "{}: {}",
            failure.message_id,
            failure.reason
        );
    }
    assert_eq!(db.stored_message_ids().await, ["now", "within-retention"]);
}
