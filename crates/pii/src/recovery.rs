//! Recovering masked values for authorised users, and re-masking rows after a key rotation.
//!
//! Both work through the vault (`pii_vault`, see `vault.rs`): only rows written while the
//! function ran with `RECOVERY_KEY` can be recovered or re-masked. Nothing here logs values; the
//! command-line tool prints recovered values to its own stdout, which is the point of it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use tokio_postgres::{Client, GenericClient};

use login_etl_core::mask::Masker;
use login_etl_core::vault::{OpenError, PiiKind, RecoveryKey};

/// One masked value and what became of the attempt to recover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub masked_value: String,
    pub outcome: Result<(PiiKind, String), RecoverError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverError {
    /// No vault entry: the row was written without RECOVERY_KEY, or the entry was deleted.
    NotInVault,
    /// The entry was sealed with another recovery key (its id is given).
    OtherKey(String),
    Open(OpenError),
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::NotInVault => write!(
                f,
                "not in pii_vault (written without RECOVERY_KEY, or deleted)"
            ),
            RecoverError::OtherKey(id) => {
                write!(f, "sealed with recovery key id {id:?}; set RECOVERY_KEY and RECOVERY_KEY_ID to that key")
            }
            RecoverError::Open(e) => write!(f, "{e}"),
        }
    }
}

/// A vault row.
struct Entry {
    kind: PiiKind,
    key_id: String,
    ciphertext: Vec<u8>,
}

async fn entries(
    client: &impl GenericClient,
    masked: &[&str],
) -> Result<HashMap<String, Entry>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT masked_value, kind, key_id, ciphertext FROM pii_vault WHERE masked_value = ANY($1::varchar[])",
            &[&masked],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let kind = PiiKind::parse(row.get(1))?;
            let entry = Entry {
                kind,
                key_id: row.get(2),
                ciphertext: row.get(3),
            };
            Some((row.get::<_, String>(0), entry))
        })
        .collect())
}

fn open(
    key: &RecoveryKey,
    masked_value: &str,
    entry: Option<&Entry>,
) -> Result<(PiiKind, String), RecoverError> {
    let entry = entry.ok_or(RecoverError::NotInVault)?;
    if entry.key_id != key.id {
        return Err(RecoverError::OtherKey(entry.key_id.clone()));
    }
    let value = key
        .open(entry.kind, masked_value, &entry.ciphertext)
        .map_err(RecoverError::Open)?;
    Ok((entry.kind, value))
}

/// Recovers each masked value from the vault.
pub async fn recover(
    client: &Client,
    key: &RecoveryKey,
    masked_values: &[String],
) -> Result<Vec<Recovered>, tokio_postgres::Error> {
    let wanted: Vec<&str> = masked_values.iter().map(String::as_str).collect();
    let found = entries(client, &wanted).await?;
    Ok(masked_values
        .iter()
        .map(|masked| Recovered {
            masked_value: masked.clone(),
            outcome: open(key, masked, found.get(masked)),
        })
        .collect())
}

/// The masked values a query selects: every non-null text value of every column of every row.
pub async fn masked_values_of_query(
    client: &Client,
    sql: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query(sql, &[]).await?;
    let mut values = Vec::new();
    for row in &rows {
        for column in 0..row.len() {
            if let Ok(Some(value)) = row.try_get::<_, Option<String>>(column) {
                values.push(value);
            }
        }
    }
    Ok(values)
}

/// What a re-mask run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemaskReport {
    pub rows_remasked: u64,
    /// Rows left as they were because a value of theirs could not be recovered.
    pub rows_not_recoverable: u64,
    /// Vault entries of the old masks that no row refers to any more, removed.
    pub old_entries_removed: u64,
}

/// Re-masks every row masked with `old_key_id` (None: rows from before key ids) with `masker`,
/// recording `new_key_id`, and seals the values again under `key`. Runs in chunks, each in a
/// transaction, so it can be stopped and resumed.
pub async fn remask(
    client: &mut Client,
    key: &RecoveryKey,
    masker: &Masker,
    old_key_id: Option<&str>,
    new_key_id: &str,
) -> Result<RemaskReport, tokio_postgres::Error> {
    const CHUNK: usize = 1_000;
    let targets: Vec<String> = client
        .query(
            "SELECT ctid::text FROM user_logins WHERE mask_key_id IS NOT DISTINCT FROM $1",
            &[&old_key_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut report = RemaskReport::default();
    for chunk in targets.chunks(CHUNK) {
        let transaction = client.transaction().await?;
        let rows = transaction
            .query(
                "SELECT ctid::text, masked_ip, masked_device_id FROM user_logins
                 WHERE ctid = ANY($1::text[]::tid[]) FOR UPDATE",
                &[&chunk],
            )
            .await?;
        let masks: Vec<String> = rows
            .iter()
            .flat_map(|r| [r.get::<_, String>(1), r.get(2)])
            .collect();
        let wanted: Vec<&str> = masks.iter().map(String::as_str).collect();
        let found = entries(&transaction, &wanted).await?;
        let mut old_masks: Vec<String> = Vec::new();
        for row in &rows {
            let (ctid, old_ip, old_device): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let recovered = (
                open(key, &old_ip, found.get(&old_ip)),
                open(key, &old_device, found.get(&old_device)),
            );
            let (Ok((PiiKind::Ip, ip)), Ok((PiiKind::DeviceId, device_id))) = recovered else {
                report.rows_not_recoverable += 1;
                continue;
            };
            let Ok(ip) = ip.parse::<IpAddr>() else {
                report.rows_not_recoverable += 1;
                continue;
            };
            let (new_ip, new_device) = (masker.mask_ip(ip), masker.mask_device_id(&device_id));
            transaction
                .execute(
                    "UPDATE user_logins SET masked_ip = $2, masked_device_id = $3, mask_key_id = $4
                     WHERE ctid = $1::text::tid",
                    &[&ctid, &new_ip, &new_device, &new_key_id],
                )
                .await?;
            for (kind, masked, value) in [
                (PiiKind::Ip, &new_ip, ip.to_string()),
                (PiiKind::DeviceId, &new_device, device_id),
            ] {
                let sealed = key.seal(kind, masked, &value);
                transaction
                    .execute(
                        "INSERT INTO pii_vault (masked_value, kind, key_id, ciphertext) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (masked_value) DO NOTHING",
                        &[masked, &kind.as_str(), &key.id, &sealed],
                    )
                    .await?;
            }
            old_masks.extend([old_ip, old_device]);
            report.rows_remasked += 1;
        }
        report.old_entries_removed += transaction
            .execute(
                "DELETE FROM pii_vault v WHERE v.masked_value = ANY($1::varchar[])
                 AND NOT EXISTS (SELECT 1 FROM user_logins u
                                 WHERE u.masked_ip = v.masked_value OR u.masked_device_id = v.masked_value)",
                &[&old_masks],
            )
            .await?;
        transaction.commit().await?;
    }
    Ok(report)
}
