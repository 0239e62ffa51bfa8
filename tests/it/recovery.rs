//! The PII vault and key rotation against a real PostgreSQL: recovery round trips, wrong keys,
//! nothing in the vault without RECOVERY_KEY, and re-masking that keeps duplicates matching.

use crate::common::*;
use login_etl::handler::Processor;
use login_etl_core::mask::Masker;
use login_etl_core::vault::{OpenError, PiiKind, RecoveryKey};
use login_etl_pii::recovery::{recover, remask, RecoverError};
use serde_json::json;

const OTHER_KEY: &str = "a-second-masking-key-for-rotation-tests-0123456789";

fn recovery_key(id: &str, fill: u8) -> RecoveryKey {
    RecoveryKey::from_hex(id, &format!("{fill:02x}").repeat(64)).unwrap()
}

fn hex_of(fill: u8) -> String {
    format!("{fill:02x}").repeat(64)
}

async fn processor_with(db: &TestDb, masker: Masker) -> Processor {
    processor_masking_with(db.config(), masker).await
}

/// A database with one login stored with the vault on, under the recovery key `r1` of 0x42s.
async fn one_login_sealed_with_0x42() -> TestDb {
    let db = TestDb::new().await;
    let masker = Masker::new(KEY.as_bytes())
        .unwrap()
        .with_recovery(recovery_key("r1", 0x42));
    processor_with(&db, masker)
        .await
        .process(&[sqs_record("a", GOOD_BODY)], in_seconds(10))
        .await
        .unwrap();
    db
}

fn login(ip: &str, device_id: &str) -> String {
    let mut body: serde_json::Value = serde_json::from_str(GOOD_BODY).unwrap();
    body["ip"] = json!(ip);
    body["device_id"] = json!(device_id);
    body.to_string()
}

async fn masks_of(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT masked_ip, masked_device_id, mask_key_id FROM user_logins ORDER BY message_id",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn masked_values_round_trip_through_the_vault() {
    let db = TestDb::new().await;
    let key = recovery_key("r1", 0x42);
    let masker = Masker::new(KEY.as_bytes())
        .unwrap()
        .with_recovery(key.clone());
    let processor = processor_with(&db, masker).await;
    let records = vec![
        sqs_record("a", &login("199.172.111.135", "593-47-5928")),
        sqs_record("b", &login("2001:DB8::1", "593-47-5928")),
        sqs_record("c", &login("199.172.111.135", " device-with-spaces ")),
    ];
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(outcome.stored, 3);
    // Equal values, equal masks: one vault entry per distinct mask (2 ips + 2 device ids).
    assert_eq!(db.count_of("pii_vault").await, 4);

    let masks: Vec<String> = masks_of(&db)
        .await
        .into_iter()
        .flat_map(|(ip, device, _)| [ip, device])
        .collect();
    let client = db.client().await;
    let recovered = recover(&client, &key, &masks).await.unwrap();
    let values: Vec<(PiiKind, String)> =
        recovered.into_iter().map(|r| r.outcome.unwrap()).collect();
    assert_eq!(
        values,
        [
            (PiiKind::Ip, "199.172.111.135".to_string()),
            (PiiKind::DeviceId, "593-47-5928".to_string()),
            (PiiKind::Ip, "2001:db8::1".to_string()),
            (PiiKind::DeviceId, "593-47-5928".to_string()),
            (PiiKind::Ip, "199.172.111.135".to_string()),
            (PiiKind::DeviceId, "device-with-spaces".to_string()),
        ]
    );
    // A redelivery writes nothing new anywhere.
    let again = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!((again.duplicates, again.failures.len()), (3, 0));
    assert_eq!(db.count_of("pii_vault").await, 4);
}

#[tokio::test]
async fn a_wrong_recovery_key_fails_authentication() {
    let db = one_login_sealed_with_0x42().await;
    let masked = vec![masks_of(&db).await[0].0.clone(), "not-a-mask".to_string()];
    let client = db.client().await;

    let same_id_wrong_bytes = recover(&client, &recovery_key("r1", 0x43), &masked)
        .await
        .unwrap();
    assert_eq!(
        same_id_wrong_bytes[0].outcome,
        Err(RecoverError::Open(OpenError::Authentication))
    );
    assert_eq!(
        same_id_wrong_bytes[1].outcome,
        Err(RecoverError::NotInVault)
    );
    let other_id = recover(&client, &recovery_key("r2", 0x42), &masked)
        .await
        .unwrap();
    assert_eq!(
        other_id[0].outcome,
        Err(RecoverError::OtherKey("r1".into()))
    );
}

#[tokio::test]
async fn without_a_recovery_key_nothing_is_written_to_the_vault() {
    let db = TestDb::new().await;
    // The function's role is not even allowed to touch the vault.
    db.client()
        .await
        .batch_execute("REVOKE ALL ON pii_vault FROM PUBLIC")
        .await
        .unwrap();
    let processor = db.processor().await;
    let outcome = processor
        .process(
            &[sqs_record("a", GOOD_BODY), sqs_record("b", GOOD_BODY)],
            in_seconds(10),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stored, 2);
    assert_eq!(db.count_of("pii_vault").await, 0);
    assert!(masks_of(&db)
        .await
        .iter()
        .all(|(_, _, key_id)| key_id.as_deref() == Some("k1")));
}

#[tokio::test]
async fn re_masking_after_a_key_rotation_keeps_duplicates_matching() {
    let db = TestDb::new().await;
    let key = recovery_key("r1", 0x42);
    let old = Masker::new(KEY.as_bytes())
        .unwrap()
        .with_key_id("2026-10")
        .with_recovery(key.clone());
    let new = Masker::new(OTHER_KEY.as_bytes())
        .unwrap()
        .with_key_id("2026-11")
        .with_recovery(key.clone());
    let same_login = login("10.1.2.3", "123-45-6789");

    let before = processor_with(&db, old.clone()).await;
    before
        .process(
            &[
                sqs_record("old-1", &same_login),
                sqs_record("old-2", GOOD_BODY),
            ],
            in_seconds(10),
        )
        .await
        .unwrap();

    let mut client = db.client().await;
    let report = remask(&mut client, &key, &new, Some("2026-10"), "2026-11")
        .await
        .unwrap();
    assert_eq!((report.rows_remasked, report.rows_not_recoverable), (2, 0));
    assert_eq!(
        report.old_entries_removed, 4,
        "the old masks' vault entries are gone"
    );

    let after = processor_with(&db, new.clone()).await;
    after
        .process(&[sqs_record("new-1", &same_login)], in_seconds(10))
        .await
        .unwrap();

    let masks = masks_of(&db).await; // ordered: new-1, old-1, old-2
    assert_eq!(
        masks[0].0, masks[1].0,
        "the same ip masks equally across the rotation"
    );
    assert_eq!(
        masks[0].1, masks[1].1,
        "the same device id masks equally across the rotation"
    );
    assert_eq!(masks[1].0, new.mask_ip("10.1.2.3".parse().unwrap()));
    assert_ne!(masks[1].0, old.mask_ip("10.1.2.3".parse().unwrap()));
    assert!(masks
        .iter()
        .all(|(_, _, id)| id.as_deref() == Some("2026-11")));
    // Re-masked values are still recoverable.
    let recovered = recover(&client, &key, &[masks[1].1.clone()]).await.unwrap();
    assert_eq!(
        recovered[0].outcome,
        Ok((PiiKind::DeviceId, "123-45-6789".to_string()))
    );
}

#[tokio::test]
async fn the_command_line_tool_recovers_and_refuses_clearly() {
    let db = one_login_sealed_with_0x42().await;
    let (masked_ip, masked_device, _) = masks_of(&db).await.remove(0);
    let right = hex_of(0x42);

    let (ok, stdout, _) = pii_tool(&db, &[("RECOVERY_KEY", &right)], &["recover", &masked_ip]);
    assert!(ok);
    assert_eq!(stdout, format!("{masked_ip}\tip\t199.172.111.135\n"));

    let query = "SELECT masked_device_id FROM user_logins WHERE message_id = 'a'";
    let (ok, stdout, _) = pii_tool(
        &db,
        &[("RECOVERY_KEY", &right)],
        &["recover", "--query", query],
    );
    assert!(ok);
    assert_eq!(stdout, format!("{masked_device}\tdevice_id\t593-47-5928\n"));

    let (ok, stdout, stderr) = pii_tool(
        &db,
        &[("RECOVERY_KEY", &hex_of(0x41))],
        &["recover", &masked_ip],
    );
    assert!(!ok);
    assert!(stdout.is_empty(), "no garbage is printed: {stdout}");
    assert!(stderr.contains("authentication failed"), "{stderr}");

    let (ok, _, stderr) = pii_tool(&db, &[], &["recover", &masked_ip]);
    assert!(!ok);
    assert!(stderr.contains("RECOVERY_KEY is not set"), "{stderr}");

    // Lookups under the current and the previous key, for the rotation window.
    let env = [
        ("MASKING_KEY", KEY),
        ("MASKING_KEY_PREVIOUS", OTHER_KEY),
        ("MASKING_KEY_PREVIOUS_ID", "k0"),
    ];
    let (ok, stdout, _) = pii_tool(&db, &env, &["mask", "ip", "199.172.111.135"]);
    assert!(ok);
    let old = Masker::new(OTHER_KEY.as_bytes())
        .unwrap()
        .mask_ip("199.172.111.135".parse().unwrap());
    assert_eq!(stdout, format!("k1\t{masked_ip}\nk0\t{old}\n"));
}
