//! `login-etl-pii`: recover masked values for authorised users, look values up under the current
//! and previous masking keys, and re-mask rows after a key rotation. Not part of the Lambda.
//!
//! It prints recovered values to stdout, which is its purpose; it logs nothing.

use std::process::ExitCode;
use std::time::Duration;

use login_etl::config::{masking_key, recovery_key, ConfigError, DatabaseConfig, KeySlot};
use login_etl::mask::Masker;
use login_etl::recovery::{masked_values_of_query, recover, remask};
use login_etl::store::connect_client;
use login_etl::vault::{PiiKind, RecoveryKey};
use tokio::time::Instant;

const USAGE: &str = "\
usage:
  login-etl-pii recover MASKED_VALUE...      print the original of each masked value
  login-etl-pii recover --query SQL          ... of every text value the query returns
  login-etl-pii mask ip|device_id VALUE      the value's mask under MASKING_KEY and MASKING_KEY_PREVIOUS
  login-etl-pii remask --from-key-id ID      re-mask rows masked with key ID under MASKING_KEY
  login-etl-pii remask --from-unversioned    ... rows from before key ids (mask_key_id NULL)

environment: DATABASE_URL (or PG*), RECOVERY_KEY, RECOVERY_KEY_ID, MASKING_KEY, MASKING_KEY_ID,
MASKING_KEY_PREVIOUS, MASKING_KEY_PREVIOUS_ID (see PRIVACY.md)";

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
            let kind = PiiKind::parse(kind).ok_or("mask takes `ip` or `device_id`")?;
            let mut printed = 0;
            for slot in [KeySlot::Current, KeySlot::Previous] {
                if let Some(masker) = masking_key(&lookup, slot).map_err(config_error)? {
                    println!("{}\t{}", masker.key_id(), mask(&masker, kind, value)?);
                    printed += 1;
                }
            }
            if printed == 0 {
                return Err("MASKING_KEY is not set".into());
            }
            Ok(ExitCode::SUCCESS)
        }
        ["remask", "--from-key-id", old] => remask_rows(&lookup, Some(old)).await,
        ["remask", "--from-unversioned"] => remask_rows(&lookup, None).await,
        _ => Err(USAGE.into()),
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
