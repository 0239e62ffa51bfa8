//! The COPY baseline, and the bulk-write designs the store was chosen from, on a plain client.
//!
//! Each candidate must keep the store's contract: idempotent on message_id, and it must tell
//! how many rows were new. They are measured on the same pre-masked rows as the baseline.

use std::collections::HashSet;

use login_etl_core::batch::LoginRow;
// The store's own COPY: its columns, their types and each row's values.
use login_etl::store::{
    copy_values, COPY_COLUMNS as COLUMNS, COPY_COLUMN_TYPES as TYPES, COPY_ROWS,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// The key id the benchmark's Masker records (`MASKING_KEY_ID` unset).
const MASK_KEY_ID: &str = login_etl_core::mask::DEFAULT_KEY_ID;

/// Streams rows through a prepared `COPY ... FROM STDIN (FORMAT binary)`; returns rows copied.
async fn copy_rows<'a>(
    client: &Client,
    copy: &Statement,
    rows: impl Iterator<Item = &'a LoginRow>,
) -> Result<usize, tokio_postgres::Error> {
    let sink = client.copy_in(copy).await?;
    copy_into(BinaryCopyInWriter::new(sink, &TYPES), rows).await
}

async fn copy_into<'a>(
    writer: BinaryCopyInWriter,
    rows: impl Iterator<Item = &'a LoginRow>,
) -> Result<usize, tokio_postgres::Error> {
    tokio::pin!(writer);
    for row in rows {
        writer
            .as_mut()
            .write(&copy_values(row, &MASK_KEY_ID))
            .await?;
    }
    Ok(writer.finish().await? as usize)
}

/// The database's limit: binary COPY straight into user_logins (no conflict handling at all).
pub struct Copy {
    statement: Statement,
}

impl Copy {
    pub async fn prepare(client: &Client) -> Copy {
        let statement = client.prepare(COPY_ROWS).await.expect("prepare COPY");
        Copy { statement }
    }

    pub async fn write(&self, client: &Client, rows: &[LoginRow]) -> usize {
        copy_rows(client, &self.statement, rows.iter())
            .await
            .expect("COPY the batch")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Candidate {
    /// The first store: one `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING
    /// RETURNING message_id`.
    UnnestReturning,
    /// The same without RETURNING: the command tag's row count says how many were new.
    UnnestCount,
    /// Binary COPY into a temporary table, then one `INSERT ... SELECT ... ON CONFLICT`, in a
    /// transaction (`ON COMMIT DELETE ROWS` empties the temporary table).
    TempCopy,
    /// Look up which message_ids exist, pipelined with the start of a binary COPY, then COPY
    /// only the new rows straight into user_logins: the store's path for large batches, here
    /// without the handler around it, at every size (it is what decides `COPY_FROM_ROWS`).
    ProbeCopy,
}

impl Candidate {
    pub const ALL: [Candidate; 4] = [
        Candidate::UnnestReturning,
        Candidate::UnnestCount,
        Candidate::TempCopy,
        Candidate::ProbeCopy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Candidate::UnnestReturning => "candidate: unnest INSERT .. RETURNING",
            Candidate::UnnestCount => "candidate: unnest INSERT, row count",
            Candidate::TempCopy => "candidate: COPY to temp + INSERT .. ON CONFLICT",
            Candidate::ProbeCopy => "candidate: look up ids + COPY new rows",
        }
    }
}

const UNNEST: &str = "\
INSERT INTO user_logins
    (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date,
     mask_key_id)
SELECT m, u, d, ip, dev, l, v, c, $9::varchar
FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
            $6::varchar[], $7::int4[], $8::date[]) AS t(m, u, d, ip, dev, l, v, c)
ON CONFLICT (message_id, create_date) DO NOTHING";

pub struct Candidates {
    unnest_returning: Statement,
    unnest_count: Statement,
    temp_copy: Statement,
    from_temp: Statement,
    probe: Statement,
    copy: Statement,
}

impl Candidates {
    pub async fn prepare(client: &Client) -> Candidates {
        client
            .batch_execute(
                "CREATE TEMPORARY TABLE login_batch (LIKE user_logins) ON COMMIT DELETE ROWS",
            )
            .await
            .expect("create the temporary table");
        let prepare = |sql: String| async move { client.prepare(&sql).await.expect("prepare") };
        Candidates {
            unnest_returning: prepare(format!("{UNNEST} RETURNING message_id")).await,
            unnest_count: prepare(UNNEST.to_string()).await,
            temp_copy: prepare(format!(
                "COPY login_batch ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await,
            from_temp: prepare(format!(
                "INSERT INTO user_logins ({COLUMNS}) SELECT {COLUMNS} FROM login_batch
                 ON CONFLICT (message_id, create_date) DO NOTHING"
            ))
            .await,
            // One index lookup per id, as in the store (a generic plan of `= ANY($1)` can turn
            // into a sequential scan comparing every row with every id).
            probe: prepare(
                "SELECT i.id FROM unnest($1::varchar[]) AS i(id) CROSS JOIN LATERAL
                 (SELECT FROM user_logins t WHERE t.message_id = i.id LIMIT 1) AS stored"
                    .into(),
            )
            .await,
            copy: prepare(format!(
                "COPY user_logins ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await,
        }
    }

    /// Writes `rows` the candidate's way; returns how many were new.
    pub async fn write(&self, client: &Client, candidate: Candidate, rows: &[LoginRow]) -> usize {
        let result = match candidate {
            Candidate::UnnestReturning => unnest(client, &self.unnest_returning, rows, true).await,
            Candidate::UnnestCount => unnest(client, &self.unnest_count, rows, false).await,
            Candidate::TempCopy => self.temp_copy(client, rows).await,
            Candidate::ProbeCopy => self.probe_copy(client, rows).await,
        };
        result.unwrap_or_else(|e| panic!("{}: {e}", candidate.name()))
    }

    async fn temp_copy(
        &self,
        client: &Client,
        rows: &[LoginRow],
    ) -> Result<usize, tokio_postgres::Error> {
        // Pipelined: BEGIN goes out with the COPY, the INSERT with the COMMIT.
        let (begun, sink) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.copy_in(&self.temp_copy)
        );
        begun?;
        copy_into(BinaryCopyInWriter::new(sink?, &TYPES), rows.iter()).await?;
        let (inserted, committed) = tokio::join!(
            client.execute(&self.from_temp, &[]),
            client.batch_execute("COMMIT")
        );
        committed?;
        Ok(inserted? as usize)
    }

    async fn probe_copy(
        &self,
        client: &Client,
        rows: &[LoginRow],
    ) -> Result<usize, tokio_postgres::Error> {
        let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
        // Both requests leave at once; the probe's answer arrives before COPY wants data.
        let params: [&(dyn ToSql + Sync); 1] = [&ids];
        let (existing, sink) = tokio::join!(
            client.query(&self.probe, &params),
            client.copy_in(&self.copy)
        );
        let existing: HashSet<String> = existing?.iter().map(|r| r.get(0)).collect();
        copy_into(
            BinaryCopyInWriter::new(sink?, &TYPES),
            rows.iter().filter(|r| !existing.contains(&r.message_id)),
        )
        .await
    }
}

async fn unnest(
    client: &Client,
    statement: &Statement,
    rows: &[LoginRow],
    returning: bool,
) -> Result<usize, tokio_postgres::Error> {
    let message_id: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
    let user_id: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let device_type: Vec<&str> = rows.iter().map(|r| r.device_type.as_str()).collect();
    let masked_ip: Vec<&str> = rows.iter().map(|r| r.masked_ip.as_str()).collect();
    let masked_device_id: Vec<&str> = rows.iter().map(|r| r.masked_device_id.as_str()).collect();
    let locale: Vec<Option<&str>> = rows.iter().map(|r| r.locale.as_deref()).collect();
    let app_version: Vec<i32> = rows.iter().map(|r| r.app_version).collect();
    let create_date: Vec<time::Date> = rows.iter().map(|r| r.create_date).collect();
    let params: [&(dyn ToSql + Sync); 9] = [
        &message_id,
        &user_id,
        &device_type,
        &masked_ip,
        &masked_device_id,
        &locale,
        &app_version,
        &create_date,
        &MASK_KEY_ID,
    ];
    if returning {
        Ok(client.query(statement, &params).await?.len())
    } else {
        Ok(client.execute(statement, &params).await? as usize)
    }
}
