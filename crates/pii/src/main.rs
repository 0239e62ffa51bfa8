//! `login-etl-pii`: recover masked values for authorised users, look values up under the current
//! and previous masking keys, re-mask rows after a key rotation, answer deletion requests and run
//! the partition job (retention). Not part of the Lambda.
//!
//! It prints recovered values to stdout, which is its purpose; it logs nothing.

use std::process::ExitCode;
use std::time::Duration;

use login_etl::config::{masking_key, recovery_key, KeySlot};
use login_etl::config_error::ConfigError;
use login_etl::store::connect_client;
use login_etl::store::DatabaseConfig;
use login_etl_core::mask::Masker;
use login_etl_core::vault::{PiiKind, RecoveryKey};
use login_etl_pii::lifecycle::{forget, maintain_partitions, Person};
use login_etl_pii::recovery::{masked_values_of_query, recover, remask};
use tokio::time::Instant;

const USAGE: &str = "\
usage:
  login-etl-pii recover MASKED_VALUE...      print the original of each masked value
  login-etl-pii recover --query SQL          ... of every text value the query returns
  login-etl-pii mask ip|device_id VALUE      the value's mask under MASKING_KEY and MASKING_KEY_PREVIOUS
  login-etl-pii remask --from-key-id ID      re-mask rows masked with key ID under MASKING_KEY
  login-etl-pii remask --from-unversioned    ... rows from before key ids (mask_key_id NULL)
  login-etl-pii forget --user-id USER_ID     delete a person's rows and the vault entries only they use
  login-etl-pii forget ip|device_id VALUE    ... the rows of a value, masked under MASKING_KEY and MASKING_KEY_PREVIOUS
  login-etl-pii partitions --retain-days N [--days-ahead D]
                                             drop days before the last N, create the next D (default 7)

environment: DATABASE_URL (or PG*), RECOVERY_KEY, RECOVERY_KEY_ID, MASKING_KEY, MASKING_KEY_ID,
MASKING_KEY_PREVIOUS, MASKING_KEY_PREVIOUS_ID (see docs/privacy.md)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("login-etl-pii: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &[&str]) -> Result<ExitCode, String> {
    let lookup = |name: &str| std::env::var(name).ok();
    match args {
        ["recover", "--query", sql] => {
            let (client, key) = (database(&lookup).await?, required_recovery_key(&lookup)?);
            let masked = masked_values_of_query(&client, sql)
                .await
                .map_err(|e| format!("the query failed: {e}"))?;
            print_recovered(&client, &key, &masked).await
        }
        ["recover", masked @ ..] if !masked.is_empty() => {
            let (client, key) = (database(&lookup).await?, required_recovery_key(&lookup)?);
            let masked: Vec<String> = masked.iter().map(|m| m.to_string()).collect();
            print_recovered(&client, &key, &masked).await
        }
        ["mask", kind, value] => {
            for (key_id, masked) in masks_under_each_key(&lookup, kind, value)? {
                println!("{key_id}\t{masked}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ["remask", "--from-key-id", old] => remask_rows(&lookup, Some(old)).await,
        ["remask", "--from-unversioned"] => remask_rows(&lookup, None).await,
        ["forget", "--user-id", user_id] => {
            forget_person(&lookup, Person::UserId(user_id.to_string())).await
        }
        ["forget", kind, value] => {
            let masks = masks_under_each_key(&lookup, kind, value)?;
            let masks = masks.into_iter().map(|(_, masked)| masked).collect();
            forget_person(&lookup, Person::Masked(masks)).await
        }
        ["partitions", "--retain-days", days] => run_partition_job(&lookup, days, "7").await,
        ["partitions", "--retain-days", days, "--days-ahead", ahead] => {
            run_partition_job(&lookup, days, ahead).await
        }
        _ => Err(USAGE.into()),
    }
}

/// The value's mask under each masking key set (current, then previous), with the key's id.
fn masks_under_each_key(
    lookup: &impl Fn(&str) -> Option<String>,
    kind: &str,
    value: &str,
) -> Result<Vec<(String, String)>, String> {
    let kind = PiiKind::parse(kind).ok_or("give the kind of the value: `ip` or `device_id`")?;
    let mut masks = Vec::new();
    for slot in [KeySlot::Current, KeySlot::Previous] {
        if let Some(masker) = masking_key(lookup, slot).map_err(config_error)? {
            masks.push((masker.key_id().to_owned(), mask(&masker, kind, value)?));
        }
    }
    if masks.is_empty() {
        return Err("MASKING_KEY is not set".into());
    }
    Ok(masks)
}

async fn forget_person(
    lookup: &impl Fn(&str) -> Option<String>,
    person: Person,
) -> Result<ExitCode, String> {
    let mut client = database(lookup).await?;
    let forgotten = forget(&mut client, &person).await.map_err(|e| {
        format!(
            "the deletion failed, nothing was deleted: {}",
            server_says(&e)
        )
    })?;
    println!(
        "deleted {} rows and {} vault entries; messages still in the queue or its DLQ hold raw bodies: purge them too (docs/privacy.md)",
        forgotten.rows_deleted, forgotten.vault_entries_deleted
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_partition_job(
    lookup: &impl Fn(&str) -> Option<String>,
    retain_days: &str,
    days_ahead: &str,
) -> Result<ExitCode, String> {
    let days = |text: &str, flag: &str, least: i32| {
        text.parse::<i32>()
            .ok()
            .filter(|days| *days >= least)
            .ok_or_else(|| format!("{flag} takes a whole number of days, at least {least}"))
    };
    let retain_days = days(retain_days, "--retain-days", 1)?;
    let days_ahead = days(days_ahead, "--days-ahead", 0)?;
    let client = database(lookup).await?;
    let done = maintain_partitions(&client, retain_days, days_ahead)
        .await
        .map_err(|e| {
            format!(
                "the partition job failed, nothing changed: {}",
                server_says(&e)
            )
        })?;
    println!(
        "partitions: {} created, {} dropped; {} rows past retention deleted from the default partition; {} vault entries no remaining row uses deleted",
        done.partitions_created,
        done.partitions_dropped,
        done.default_rows_deleted,
        done.vault_entries_deleted
    );
    Ok(ExitCode::SUCCESS)
}

/// The server's message and SQLSTATE (tokio-postgres shows only "db error"). These statements
/// take no logged value as text the server could quote back: ids, dates and masks at most.
fn server_says(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn mask(masker: &Masker, kind: PiiKind, value: &str) -> Result<String, String> {
    match kind {
        PiiKind::Ip => {
            let ip = value
                .trim()
                .parse()
                .map_err(|_| "that is not an IPv4 or IPv6 address")?;
            Ok(masker.mask_ip(ip))
        }
        PiiKind::DeviceId => Ok(masker.mask_device_id(value)),
    }
}

async fn print_recovered(
    client: &tokio_postgres::Client,
    key: &RecoveryKey,
    masked: &[String],
) -> Result<ExitCode, String> {
    let recovered = recover(client, key, masked)
        .await
        .map_err(|e| format!("reading pii_vault failed: {e}"))?;
    let mut all_ok = true;
    for item in recovered {
        match item.outcome {
            Ok((kind, value)) => println!("{}\t{}\t{value}", item.masked_value, kind.as_str()),
            Err(error) => {
                all_ok = false;
                eprintln!("{}\t{error}", item.masked_value);
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn remask_rows(
    lookup: &impl Fn(&str) -> Option<String>,
    old: Option<&str>,
) -> Result<ExitCode, String> {
    let key = required_recovery_key(lookup)?;
    let masker = masking_key(lookup, KeySlot::Current)
        .map_err(config_error)?
        .ok_or("MASKING_KEY is not set: it is the new key rows are re-masked with")?;
    if old == Some(masker.key_id()) {
        return Err(format!(
            "rows with key id {:?} already use MASKING_KEY; set MASKING_KEY_ID to the new key's id",
            masker.key_id()
        ));
    }
    let mut client = database(lookup).await?;
    let report = remask(&mut client, &key, &masker, old, masker.key_id())
        .await
        .map_err(|e| {
            format!(
                "re-masking failed (finished chunks are committed; run it again to resume): {e}"
            )
        })?;
    println!(
        "re-masked {} rows with key id {:?}; {} rows could not be recovered and keep their masks; {} old vault entries removed",
        report.rows_remasked,
        masker.key_id(),
        report.rows_not_recoverable,
        report.old_entries_removed
    );
    Ok(if report.rows_not_recoverable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn required_recovery_key(lookup: &impl Fn(&str) -> Option<String>) -> Result<RecoveryKey, String> {
    recovery_key(lookup).map_err(config_error)?.ok_or_else(|| {
        "RECOVERY_KEY is not set: recovering values needs the vault key (128 hex characters)".into()
    })
}

async fn database(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<tokio_postgres::Client, String> {
    let config = DatabaseConfig::from_lookup(lookup).map_err(config_error)?;
    connect_client(config, Instant::now() + Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())
}

fn config_error(error: ConfigError) -> String {
    error.to_string()
}
