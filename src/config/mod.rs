//! Environment -> typed configuration. Every error names the variable to fix (`ConfigError`).
//!
//! - here: `Config`, assembled from its parts, and the function's plain settings;
//! - `keys`: the masking and recovery keys;
//! - the database's settings are the store's own (`store::settings`, `store::sslmode`,
//!   `store::iam`); the secrets are `secrets`'s.

use login_etl_core::mask::Masker;

mod keys;

pub use keys::{masking_key, recovery_key, KeySlot, DEFAULT_RECOVERY_KEY_ID};

use crate::config_error::ConfigError;
use crate::store::{DatabaseConfig, StatementMode};

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// The current masking key with its id and, with `RECOVERY_KEY` set, the vault key.
    pub masker: Masker,
    /// Apply the embedded migrations at start-up (local runs and tests); deployed functions
    /// normally run with a role that cannot create tables, so this is off by default.
    pub auto_migrate: bool,
    /// `PREPARED_STATEMENTS`: true (the default) or false behind a pooler in transaction mode.
    pub statement_mode: StatementMode,
    /// How many invocations the environment runs at once: `AWS_LAMBDA_MAX_CONCURRENCY`, which
    /// Lambda Managed Instances set; 1 (unset) on classic Lambda.
    pub max_concurrency: usize,
    /// CloudWatch namespace of the per-batch EMF metrics (`METRICS_NAMESPACE`, default LoginEtl).
    pub metrics_namespace: String,
    /// `RETAIN_DAYS`: the days the partition job keeps (its `--retain-days`); a message dated
    /// before them is refused rather than stored and then deleted. Unset: no lower bound.
    pub retain_days: Option<u32>,
}

impl Config {
    /// Reads configuration through `lookup`: the environment with the secret's values over it
    /// (`secrets::settings`, as `main` does), or in tests a map. There is no `from_env`: reading
    /// the environment alone would skip `SECRET_ARN`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let masker = masking_key(&lookup, KeySlot::Current)?.ok_or(ConfigError::Missing {
            variable: "MASKING_KEY",
            hint: "set it to a secret of at least 32 bytes (e.g. `openssl rand -hex 32`), kept in a secret store",
        })?;
        let masker = match recovery_key(&lookup)? {
            Some(key) => masker.with_recovery(key),
            None => masker,
        };
        let database = DatabaseConfig::from_lookup(&lookup)?;
        let auto_migrate = flag(&lookup, "AUTO_MIGRATE", false, "use true or false")?;
        let statement_mode = if flag(
            &lookup,
            "PREPARED_STATEMENTS",
            true,
            "use true, or false behind PgBouncer in transaction mode or RDS Proxy",
        )? {
            StatementMode::Prepared
        } else {
            StatementMode::Unnamed
        };
        let max_concurrency = max_concurrency(&lookup)?;
        let metrics_namespace = lookup("METRICS_NAMESPACE")
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "LoginEtl".to_owned());
        let retain_days = match lookup("RETAIN_DAYS").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => match value.parse::<u32>() {
                Ok(days) if days >= 1 => Some(days),
                _ => {
                    return Err(ConfigError::Invalid {
                        variable: "RETAIN_DAYS",
                        why: "it must be a whole number of days of at least 1, the partition job's --retain-days".into(),
                    })
                }
            },
        };
        Ok(Config {
            database,
            masker,
            auto_migrate,
            statement_mode,
            max_concurrency,
            metrics_namespace,
            retain_days,
        })
    }
}

/// `AWS_LAMBDA_MAX_CONCURRENCY`: how many invocations the environment runs at once (1 unset).
pub fn max_concurrency(lookup: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    match lookup("AWS_LAMBDA_MAX_CONCURRENCY")
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => Ok(1),
        Some(value) => match value.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n as usize),
            _ => Err(ConfigError::Invalid {
                variable: "AWS_LAMBDA_MAX_CONCURRENCY",
                why: "it must be a whole number of at least 1".into(),
            }),
        },
    }
}

/// A true/false variable; unset or empty means `default`, anything but true/false/1/0 is an
/// error that says `what_to_use`.
fn flag(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
    what_to_use: &str,
) -> Result<bool, ConfigError> {
    match lookup(variable).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            variable,
            why: what_to_use.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RootCertificates, SslMode};
    use std::collections::HashMap;
    use std::path::PathBuf;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    fn error_of(vars: &[(&str, &str)]) -> String {
        config(vars).unwrap_err().to_string()
    }

    #[test]
    fn reads_a_database_url_with_libpq_ssl_options() {
        let c = config(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://etl:pw@db.example:6432/logins?sslmode=verify-full&sslrootcert=/ca.pem&application_name=etl"),
        ])
        .unwrap();
        let db = c.database;
        assert_eq!(db.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            db.root_cert,
            Some(RootCertificates::File(PathBuf::from("/ca.pem")))
        );
        assert_eq!(db.connection.get_ports(), &[6432]);
        assert_eq!(db.connection.get_dbname(), Some("logins"));
        assert_eq!(db.connection.get_application_name(), Some("etl"));
        assert!(!c.auto_migrate);
    }

    #[test]
    fn tls_is_mandatory_from_require_upwards() {
        use tokio_postgres::config::SslMode as Negotiation;
        for (mode, negotiation) in [
            ("disable", Negotiation::Disable),
            ("prefer", Negotiation::Prefer),
            ("require", Negotiation::Require),
            ("verify-ca", Negotiation::Require),
            ("verify-full", Negotiation::Require),
        ] {
            let db = DatabaseConfig::from_url(&format!(
                "postgres://u@h/d?sslmode={mode}&sslrootcert=/ca.pem"
            ))
            .unwrap();
            assert_eq!(db.connection.get_ssl_mode(), negotiation, "{mode}");
        }
    }

    #[test]
    fn defaults_to_sslmode_prefer_like_libpq() {
        let c = config(&[("MASKING_KEY", KEY), ("DATABASE_URL", "postgres://u@h/d")]).unwrap();
        assert_eq!(c.database.ssl_mode, SslMode::Prefer);
    }

    #[test]
    fn falls_back_to_the_standard_pg_variables() {
        let c = config(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "10.0.0.5"),
            ("PGPORT", "5433"),
            ("PGUSER", "etl"),
            ("PGPASSWORD", "secret"),
            ("PGSSLMODE", "require"),
        ])
        .unwrap();
        assert_eq!(c.database.connection.get_user(), Some("etl"));
        assert_eq!(c.database.connection.get_dbname(), Some("etl"));
        assert_eq!(c.database.connection.get_ports(), &[5433]);
        assert_eq!(c.database.ssl_mode, SslMode::Require);
    }

    #[test]
    fn errors_name_the_variable_to_fix() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        assert!(error_of(&[url]).starts_with("MASKING_KEY is not set"));
        assert!(error_of(&[url, ("MASKING_KEY", "short")])
            .starts_with("MASKING_KEY is invalid: it is 5 bytes"));
        assert!(error_of(&[("MASKING_KEY", KEY)]).starts_with("DATABASE_URL is not set"));
        assert!(error_of(&[("MASKING_KEY", KEY), ("PGHOST", "h")]).starts_with("PGUSER is not set"));
        let bad_mode = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u@h/d?sslmode=verify"),
        ]);
        assert!(
            bad_mode.starts_with("DATABASE_URL is invalid: sslmode must be one of"),
            "{bad_mode}"
        );
        let bad_pg_mode = error_of(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "h"),
            ("PGUSER", "u"),
            ("PGSSLMODE", "on"),
        ]);
        assert!(
            bad_pg_mode.starts_with("PGSSLMODE is invalid"),
            "{bad_pg_mode}"
        );
        assert!(
            error_of(&[("MASKING_KEY", KEY), url, ("AUTO_MIGRATE", "yes")])
                .starts_with("AUTO_MIGRATE is invalid")
        );
    }

    #[test]
    fn iam_auth_needs_tls_one_host_no_password_and_aws_credentials() {
        let aws = [
            ("MASKING_KEY", KEY),
            ("DATABASE_AUTH", "iam"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
            ("AWS_REGION", "eu-west-1"),
        ];
        let with_url = |url: &'static str| {
            let mut vars = aws.to_vec();
            vars.push(("DATABASE_URL", url));
            config(&vars)
                .map(|c| c.database.iam_auth.is_some())
                .map_err(|e| e.to_string())
        };
        assert_eq!(with_url("postgres://u@h/d?sslmode=require"), Ok(true));
        for (url, why) in [
            (
                "postgres://u@h/d",
                "sslmode must be require, verify-ca or verify-full, not prefer",
            ),
            ("postgres://u@h/d?sslmode=disable", "not disable"),
            ("postgres://u@h1,h2/d?sslmode=require", "must name one host"),
            (
                "postgres://u:pw@h/d?sslmode=require",
                "must hold no password",
            ),
        ] {
            let error = with_url(url).unwrap_err();
            assert!(
                error.starts_with("DATABASE_AUTH is invalid: with iam,") && error.contains(why),
                "{error}"
            );
        }
        let mut no_region = aws.to_vec();
        no_region.retain(|(name, _)| *name != "AWS_REGION");
        no_region.push(("DATABASE_URL", "postgres://u@h/d?sslmode=require"));
        assert!(error_of(&no_region).starts_with("AWS_REGION is not set"));
        let error = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u@h/d"),
            ("DATABASE_AUTH", "token"),
        ]);
        assert!(
            error.starts_with("DATABASE_AUTH is invalid: use password"),
            "{error}"
        );
    }

    #[test]
    fn verifying_needs_a_root_certificate_and_the_system_store_needs_verify_full() {
        let parse = |query: &str| {
            DatabaseConfig::from_url(&format!("postgres://u@h/d?{query}"))
                .map(|db| (db.ssl_mode, db.root_cert))
                .map_err(|e| e.to_string())
        };
        for mode in ["verify-ca", "verify-full"] {
            let error = parse(&format!("sslmode={mode}")).unwrap_err();
            assert!(
                error.starts_with(&format!(
                    "DATABASE_URL is invalid: sslmode={mode} needs sslrootcert"
                )),
                "{error}"
            );
        }
        assert_eq!(
            parse("sslrootcert=system"),
            Ok((SslMode::VerifyFull, Some(RootCertificates::System)))
        );
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let error = parse(&format!("sslmode={weak}&sslrootcert=system")).unwrap_err();
            assert!(
                error.contains("sslrootcert=system needs sslmode=verify-full"),
                "{error}"
            );
        }
        let error = config(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "h"),
            ("PGUSER", "u"),
            ("PGSSLMODE", "verify-full"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("PGSSLMODE is invalid: sslmode=verify-full needs sslrootcert"),
            "{error}"
        );
    }

    #[test]
    fn ssl_options_in_the_url_are_percent_decoded_like_libpq() {
        let db = DatabaseConfig::from_url(
            "postgres://u@h/d?sslmode=verify%2Dfull&sslrootcert=/etc/my%20certs/ca%2Bold.pem",
        )
        .unwrap();
        assert_eq!(db.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            db.root_cert,
            Some(RootCertificates::File(PathBuf::from(
                "/etc/my certs/ca+old.pem"
            )))
        );
        for bad in ["%", "%2", "%zz", "%ff"] {
            let error = DatabaseConfig::from_url(&format!("postgres://u@h/d?sslrootcert={bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("DATABASE_URL is invalid: a `%`"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn every_key_refuses_surrounding_whitespace_naming_the_variable() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let recovery = "ab".repeat(64);
        for variable in ["MASKING_KEY", "MASKING_KEY_PREVIOUS", "RECOVERY_KEY"] {
            let clean = if variable == "RECOVERY_KEY" {
                recovery.as_str()
            } else {
                KEY
            };
            for padded in [
                format!("{clean}\n"),
                format!(" {clean}"),
                format!("{clean}\t"),
            ] {
                let mut vars = vec![url, ("MASKING_KEY", KEY)];
                vars.retain(|(name, _)| *name != variable);
                vars.push((variable, &padded));
                let vars: HashMap<String, String> = vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let lookup = |name: &str| vars.get(name).cloned();
                let error = match variable {
                    "MASKING_KEY_PREVIOUS" => masking_key(&lookup, KeySlot::Previous)
                        .err()
                        .map(|e| e.to_string()),
                    _ => Config::from_lookup(lookup).err().map(|e| e.to_string()),
                }
                .unwrap_or_else(|| panic!("{variable} {padded:?} was accepted"));
                assert!(
                    error.starts_with(&format!(
                        "{variable} is invalid: it starts or ends with whitespace"
                    )),
                    "{error}"
                );
                assert!(!error.contains(clean), "the error shows the key: {error}");
            }
        }
    }

    #[test]
    fn prepared_statements_are_on_unless_turned_off_for_a_pooler() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let mode = |value: Option<&str>| {
            let mut vars = vec![url, ("MASKING_KEY", KEY)];
            vars.extend(value.map(|v| ("PREPARED_STATEMENTS", v)));
            config(&vars).map(|c| c.statement_mode)
        };
        assert_eq!(mode(None), Ok(StatementMode::Prepared));
        assert_eq!(mode(Some("true")), Ok(StatementMode::Prepared));
        assert_eq!(mode(Some("false")), Ok(StatementMode::Unnamed));
        assert_eq!(mode(Some(" 0 ")), Ok(StatementMode::Unnamed));
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("PREPARED_STATEMENTS", "off")]);
        assert!(
            error
                .starts_with("PREPARED_STATEMENTS is invalid: use true, or false behind PgBouncer"),
            "{error}"
        );
    }

    #[test]
    fn concurrency_comes_from_lambda_managed_instances_or_is_one() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let concurrency = |value: &str| {
            config(&[
                url,
                ("MASKING_KEY", KEY),
                ("AWS_LAMBDA_MAX_CONCURRENCY", value),
            ])
            .map(|c| c.max_concurrency)
        };
        assert_eq!(
            config(&[url, ("MASKING_KEY", KEY)])
                .unwrap()
                .max_concurrency,
            1
        );
        assert_eq!(concurrency("16"), Ok(16));
        for bad in ["0", "-1", "many"] {
            let error = concurrency(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("AWS_LAMBDA_MAX_CONCURRENCY is invalid"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn reads_key_ids_and_the_optional_recovery_key() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let c = config(&[url, ("MASKING_KEY", KEY)]).unwrap();
        assert_eq!(c.masker.key_id(), "k1");
        assert_eq!(c.masker.recovery_key_id(), None);
        let hex = "ab".repeat(64);
        let c = config(&[
            url,
            ("MASKING_KEY", KEY),
            ("MASKING_KEY_ID", "2026-11"),
            ("RECOVERY_KEY", &hex),
        ])
        .unwrap();
        assert_eq!(c.masker.key_id(), "2026-11");
        assert_eq!(c.masker.recovery_key_id(), Some("r1"));
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("RECOVERY_KEY", "abc")]);
        assert!(
            error.starts_with("RECOVERY_KEY is invalid: it must be 128 hex characters"),
            "{error}"
        );
        assert!(!error.contains("abc"), "{error}");
        let long_id = "i".repeat(33);
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("MASKING_KEY_ID", &long_id)]);
        assert!(error.starts_with("MASKING_KEY_ID is invalid"), "{error}");
    }

    #[test]
    fn reads_the_previous_masking_key_for_lookups() {
        let lookup = |name: &str| match name {
            "MASKING_KEY_PREVIOUS" => Some(KEY.to_string()),
            "MASKING_KEY_PREVIOUS_ID" => Some("k0".to_string()),
            _ => None,
        };
        let previous = masking_key(&lookup, KeySlot::Previous).unwrap().unwrap();
        assert_eq!(previous.key_id(), "k0");
        assert!(masking_key(&lookup, KeySlot::Current).unwrap().is_none());
    }

    #[test]
    fn errors_never_contain_the_password() {
        let message = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u:hunter2@h:notaport/d"),
        ]);
        assert!(message.starts_with("DATABASE_URL is invalid"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let debug = format!(
            "{:?}",
            config(&[
                ("MASKING_KEY", KEY),
                ("DATABASE_URL", "postgres://u:hunter2@h/d")
            ])
            .unwrap()
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains(KEY),
            "{debug}"
        );
    }
}
