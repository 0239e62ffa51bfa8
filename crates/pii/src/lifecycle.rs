//! How long rows live: the daily partition job (retention, partitions ahead) and deletion
//! requests for one person. Used by the `login-etl-pii` tool, not by the Lambda, which only
//! writes.
//!
//! The partition work itself is SQL (migration 005), so a scheduler in the database (pg_cron)
//! can run it without this tool; a deletion request by ip or device id needs the masking keys,
//! which only the tool holds, to find the rows.

use std::collections::HashSet;

use tokio_postgres::Client;

/// What one run of the partition job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub partitions_created: i32,
    pub partitions_dropped: i32,
    /// Rows past retention that waited in the default partition (a day that had no partition).
    pub default_rows_deleted: i64,
    /// Vault entries that no remaining row uses.
    pub vault_entries_deleted: i64,
}

/// Keeps `retain_days` days of rows (today, UTC, and the days before it): drops older days'
/// partitions and the vault entries only they used, and creates the partitions of the next
/// `days_ahead` days, moving rows that arrived early out of the default partition.
pub async fn maintain_partitions(
    client: &Client,
    retain_days: i32,
    days_ahead: i32,
) -> Result<Maintenance, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT partitions_created, partitions_dropped, default_rows_deleted, vault_entries_deleted
             FROM login_etl_maintain_partitions($1, $2)",
            &[&retain_days, &days_ahead],
        )
        .await?;
    Ok(Maintenance {
        partitions_created: row.get(0),
        partitions_dropped: row.get(1),
        default_rows_deleted: row.get(2),
        vault_entries_deleted: row.get(3),
    })
}

/// Whose rows a deletion request removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    UserId(String),
    /// The masks of one ip or device id, one per masking key in use (current and previous), so
    /// rows from both sides of a key rotation are found.
    Masked(Vec<String>),
}

/// What a deletion request removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub rows_deleted: u64,
    pub vault_entries_deleted: u64,
}

/// Deletes the person's rows and the vault entries of their values that no other row uses (an
/// address shared with other users stays sealed for their rows), in one transaction.
///
/// Without an index on the masked columns, finding rows by a masked value, and checking whether
/// another row still uses one of theirs, reads the table once each: fine for the occasional
/// request, see docs/privacy.md for frequent ones.
pub async fn forget(
    client: &mut Client,
    person: &Person,
) -> Result<Forgotten, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let deleted = match person {
        Person::UserId(user_id) => {
            transaction
                .query(
                    "DELETE FROM user_logins WHERE user_id = $1
                     RETURNING masked_ip, masked_device_id",
                    &[user_id],
                )
                .await?
        }
        Person::Masked(masks) => {
            transaction
                .query(
                    "DELETE FROM user_logins
                     WHERE masked_ip = ANY($1::varchar[]) OR masked_device_id = ANY($1::varchar[])
                     RETURNING masked_ip, masked_device_id",
                    &[masks],
                )
                .await?
        }
    };
    let mut their_values: HashSet<String> = HashSet::new();
    for row in &deleted {
        for column in 0..2 {
            if let Some(value) = row.get::<_, Option<String>>(column) {
                their_values.insert(value);
            }
        }
    }
    let mut their_values: Vec<String> = their_values.into_iter().collect();
    // A writer storing a new row with one of these values locks its entry (`FOR KEY SHARE`, in
    // masked-value order, store/sql.rs) until it commits. Locking the entries first, in the same
    // order, waits for such writers; the check below is a statement of its own, so it sees their
    // rows, and an entry a stored row needs is never deleted.
    their_values.sort_unstable();
    transaction
        .execute(
            "SELECT 1 FROM pii_vault WHERE masked_value = ANY($1::varchar[])
             ORDER BY masked_value FOR UPDATE",
            &[&their_values],
        )
        .await?;
    let vault_entries_deleted = transaction
        .execute(
            "DELETE FROM pii_vault v
             WHERE v.masked_value = ANY($1::varchar[])
               AND v.masked_value NOT IN (
                   SELECT masked_ip FROM user_logins
                   WHERE masked_ip = ANY($1::varchar[])
                   UNION ALL
                   SELECT masked_device_id FROM user_logins
                   WHERE masked_device_id = ANY($1::varchar[]))",
            &[&their_values],
        )
        .await?;
    transaction.commit().await?;
    Ok(Forgotten {
        rows_deleted: deleted.len() as u64,
        vault_entries_deleted,
    })
}
