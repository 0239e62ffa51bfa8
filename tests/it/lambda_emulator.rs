//! The real `login-etl` binary under cargo-lambda's runtime emulator (`cargo lambda watch`),
//! invoked with `cargo lambda invoke --data-file`, as a user would run it locally.

use std::process::Command;

use crate::common::emulator::Emulator;
use crate::common::*;
use serde_json::{json, Value};

fn event(records: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| serde_json::to_value(sqs_record(id, body)).unwrap())
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_binary_stores_rows_and_reports_failures_under_the_emulator() {
    let db = TestDb::new().await;
    let emulator = Emulator::start(&[("DATABASE_URL", &db.url), ("MASKING_KEY", KEY)]);
    let batch = event(&[
        ("e-1", GOOD_BODY),
        ("e-2", r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#),
        ("e-3", &body_with("locale", Some(json!(null)))),
        ("e-4", "not json"),
    ]);

    let response = tokio::task::block_in_place(|| emulator.invoke(&batch));
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "e-2"}, {"itemIdentifier": "e-4"}]})
    );
    let rows = db
        .client()
        .await
        .query("SELECT message_id, masked_ip, masked_device_id, app_version FROM user_logins ORDER BY 1", &[])
        .await
        .unwrap();
    let rows: Vec<(String, String, String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let (ip, device) = (
        expected_mask("199.172.111.135"),
        expected_mask("593-47-5928"),
    );
    assert_eq!(
        rows,
        [
            ("e-1".into(), ip.clone(), device.clone(), 2_003_000),
            ("e-3".into(), ip, device, 2_003_000)
        ]
    );

    // SQS redelivers the whole batch: same answer, no second rows.
    let again = tokio::task::block_in_place(|| emulator.invoke(&batch));
    assert_eq!(again, response);
    assert_eq!(db.count().await, 2);
}

/// Starts the binary with only `env` and returns whether it failed and what it printed.
fn start_binary_with(env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_login-etl"))
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (!output.status.success(), printed)
}

#[test]
fn the_binary_refuses_to_start_without_a_masking_key_and_names_it() {
    let (failed, printed) = start_binary_with(&[]);
    assert!(
        failed && printed.contains("MASKING_KEY is not set"),
        "{printed}"
    );
}

#[test]
fn the_binary_refuses_a_short_masking_key() {
    let (failed, printed) = start_binary_with(&[("MASKING_KEY", "too-short")]);
    assert!(failed, "{printed}");
    assert!(
        printed.contains("MASKING_KEY is invalid: it is 9 bytes; it must be at least 32"),
        "{printed}"
    );
}

/// Lambda's advanced logging controls at their most verbose, in both formats. Below INFO the
/// runtime logs every raw event and the database driver every parameter; neither may reach the
/// log, while the function's own lines still do.
#[tokio::test(flavor = "multi_thread")]
async fn at_trace_level_no_value_reaches_the_log_in_text_or_json() {
    let (ip, device_id) = ("203.0.113.77", "trace-device-7f3a9c");
    let login = json!({"user_id": "trace-user", "app_version": "2.3.0", "device_type": "ios",
                       "ip": ip, "locale": "", "device_id": device_id})
    .to_string();
    let not_json = format!("{{not json {device_id} {ip}");
    let batch = event(&[("trace-1", &login), ("trace-2", &not_json)]);
    for format in ["Text", "JSON"] {
        let db = TestDb::new().await;
        let emulator = Emulator::start(&[
            ("DATABASE_URL", &db.url),
            ("MASKING_KEY", KEY),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("AWS_LAMBDA_LOG_FORMAT", format),
        ]);
        let response = tokio::task::block_in_place(|| emulator.invoke(&batch));
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "trace-2"}]})
        );
        let log = emulator.log();
        let processed = log
            .lines()
            .find(|line| line.contains("batch processed"))
            .unwrap_or_else(|| panic!("{format}: the function's own lines are logged: {log}"));
        if format == "JSON" {
            let line: Value = serde_json::from_str(processed).expect("a JSON log line");
            assert_eq!(line["fields"]["stored"], 1, "{processed}");
        }
        for value in [ip, device_id, &login, &not_json] {
            assert!(
                !log.contains(value),
                "{format}: the log holds {value:?}:\n{log}"
            );
        }
        drop(emulator);
    }
}

/// Issue 22, 5: a direct invoke whose record, or its `attributes`, is a string. lambda_runtime
/// used to log serde's error at ERROR, quoting the value, and answer with it. Now each record is
/// decoded on its own: a malformed one with a messageId fails alone, named in
/// batchItemFailures; one without fails the batch with a message naming the path and the
/// expected type. No value reaches the log or the answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_envelope_fails_its_record_alone_and_quotes_no_value() {
    const VALUE: &str = "203.0.113.77 123-45-6789";
    let db = TestDb::new().await;
    let emulator = Emulator::start(&[("DATABASE_URL", &db.url), ("MASKING_KEY", KEY)]);
    let good = serde_json::to_value(sqs_record("envelope-1", GOOD_BODY)).unwrap();
    let mut string_attributes = serde_json::to_value(sqs_record("envelope-2", GOOD_BODY)).unwrap();
    string_attributes["attributes"] = json!(VALUE);
    let mut number_timestamp = serde_json::to_value(sqs_record("envelope-3", GOOD_BODY)).unwrap();
    number_timestamp["attributes"]["SentTimestamp"] = json!(1_732_540_000_000_i64);
    let answer = emulator
        .invoke_over_http(&json!({ "Records": [good, string_attributes, number_timestamp] }))
        .await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "envelope-2"}, {"itemIdentifier": "envelope-3"}]})
    );
    assert_eq!(db.stored_message_ids().await, ["envelope-1"]);

    let answer = emulator
        .invoke_over_http(&json!({ "Records": [VALUE] }))
        .await
        .to_string();
    assert!(
        answer.contains("record 0 of the batch has no messageId (the record is a string"),
        "{answer}"
    );
    let refused = emulator
        .invoke_over_http(&json!({ "Records": VALUE }))
        .await
        .to_string();
    assert!(refused.contains("Records is a string"), "{refused}");
    let log = emulator.log();
    assert!(log.contains("attributes is a string"), "{log}");
    for (what, text) in [("answer", &answer), ("answer", &refused), ("log", &log)] {
        assert!(
            !text.contains("203.0.113.77"),
            "the {what} holds the value: {text}"
        );
    }
}

/// Issue 22, 3: a Runtime API without the Extensions API (some emulators and runtimes). The
/// shutdown extension cannot register; the function used to panic after connecting. It must
/// start, serve, and say once that it runs without shutdown handling.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_extensions_api_the_function_serves_and_says_so_once() {
    let db = TestDb::new().await;
    let environments = crate::common::emulator::Environments {
        without_extensions_api: true,
        ..Default::default()
    };
    let emulator = Emulator::start_with(
        &[("DATABASE_URL", &db.url), ("MASKING_KEY", KEY)],
        environments,
    );
    for round in 0..2 {
        let answer = emulator
            .invoke_over_http(&json!({ "Records": good_batch(&format!("no-ext-{round}"), 0..3) }))
            .await;
        assert_eq!(
            answer,
            json!({ "batchItemFailures": [] }),
            "{}",
            emulator.log()
        );
    }
    assert_eq!(db.count().await, 6);
    let log = emulator.log();
    assert_eq!(
        log.matches("runs without shutdown handling").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Issue 22, 4: a function that cannot start reports why to the Runtime API's
/// `/runtime/init/error`, as Lambda's own runtimes do: the invoker's answer carries the
/// errorType and a message naming what to fix (never a value), instead of a bare exit.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_reaches_the_invoker_through_the_runtime_api() {
    const SHORT_KEY: &str = "short-key-7f3a9c";
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable =
        format!("postgres://login_etl@127.0.0.1:{closed_port}/logins?sslmode=disable");
    let nowhere = format!("http://127.0.0.1:{closed_port}");
    // (the function's variables, the errorType, what the message must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 3] = [
        (
            &[("DATABASE_URL", &unreachable), ("MASKING_KEY", SHORT_KEY)],
            "Runtime.InvalidConfiguration",
            "MASKING_KEY is invalid",
        ),
        (
            &[
                ("DATABASE_URL", &unreachable),
                (
                    "SECRET_ARN",
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:login-etl",
                ),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-access-key"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &nowhere),
            ],
            "Runtime.InvalidConfiguration",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:login-etl",
        ),
        (
            &[("DATABASE_URL", &unreachable), ("MASKING_KEY", KEY)],
            "Runtime.DatabaseUnavailable",
            "could not connect to PostgreSQL",
        ),
    ];
    for (env, error_type, names) in cases {
        let emulator = Emulator::start(env);
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            emulator.invoke_over_http(&json!({ "Records": good_batch("never", 0..1) })),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer: the start-up failure did not reach the invoker: {}",
                emulator.log()
            )
        });
        assert_eq!(answer["errorType"], error_type, "{answer}");
        let message = answer["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{answer}");
        for secret in [SHORT_KEY, KEY, "not-a-real-secret-access-key"] {
            assert!(!answer.to_string().contains(secret), "{answer}");
        }
    }
}
