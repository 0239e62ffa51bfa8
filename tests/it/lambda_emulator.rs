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
