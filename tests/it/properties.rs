//! Property tests of the pure core: the parser never panics, whatever the bytes, and every
//! messageId of a batch ends in exactly one place.

use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::SqsMessage;
use login_etl_core::batch::{plan_batch, BatchOutcome};
use login_etl_core::failure::{Failure, Reason};
use login_etl_core::login::LoginEvent;
use login_etl_core::mask::Masker;
use proptest::prelude::*;
use time::macros::date;

const FIELDS: &[&str] = &[
    "user_id",
    "app_version",
    "device_type",
    "ip",
    "locale",
    "device_id",
    "extra",
];

/// JSON-ish values that reach the interesting branches more often than random bytes do.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}".prop_map(|s| format!("\"{s}\"")),
        "([0-9a-fA-F:.]){1,45}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| {
                let members: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

fn login_like_body() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..9).prop_map(|members| {
        let members: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", members.join(","))
    })
}

fn record(message_id: String, body: String, fifo: bool) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id);
    record.body = Some(body);
    record.event_source_arn = Some(
        if fifo {
            "arn:aws:sqs:us-east-1:1:q.fifo"
        } else {
            "arn:aws:sqs:us-east-1:1:q"
        }
        .into(),
    );
    record
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = LoginEvent::parse(&text);
    }

    #[test]
    fn parsing_login_like_json_never_panics_and_rejections_explain_themselves(body in login_like_body()) {
        if let Err(rejection) = LoginEvent::parse(&body) {
            prop_assert!(!rejection.to_string().is_empty());
        }
    }

    #[test]
    fn every_message_id_ends_in_exactly_one_place(
        bodies in prop::collection::vec(prop_oneof![login_like_body(), Just(GOOD.to_string())], 1..40),
        ids in prop::collection::vec(0u8..30, 1..40),
        fifo in any::<bool>(),
        refused_by_database in prop::collection::vec(any::<bool>(), 40),
    ) {
        let records: Vec<SqsMessage> = bodies
            .iter()
            .zip(ids.iter().cycle())
            .map(|(body, id)| record(format!("m-{id}"), body.clone(), fifo))
            .collect();
        let masker = Masker::new(&[3; 32]).unwrap();
        let plan = plan_batch(&records, &masker, date!(2026 - 01 - 01)).unwrap();
        // Stand in for the store: some planned rows are refused, the rest are stored.
        let mut store_failures = Vec::new();
        let mut stored = BTreeSet::new();
        for (row, refused) in plan.rows.iter().zip(&refused_by_database) {
            if *refused {
                store_failures.push(Failure::of(row, Reason::RefusedByDatabase("refused".into())));
            } else {
                stored.insert(row.message_id.clone());
            }
        }
        let outcome = BatchOutcome::new(plan, stored.len(), 0, store_failures);
        let failed: Vec<String> = outcome.response().batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        let failed_set: BTreeSet<String> = failed.iter().cloned().collect();

        prop_assert_eq!(failed.len(), failed_set.len(), "a messageId reported twice");
        prop_assert!(stored.is_disjoint(&failed_set), "a messageId both stored and reported");
        let all: BTreeSet<String> = records.iter().map(|r| r.message_id.clone().unwrap()).collect();
        let placed: BTreeSet<String> = stored.union(&failed_set).cloned().collect();
        prop_assert_eq!(placed, all, "a messageId in neither place");
    }
}

const GOOD: &str = r#"{"user_id":"u","app_version":"2.3.0","device_type":"ios","ip":"1.2.3.4","locale":null,"device_id":"d"}"#;
