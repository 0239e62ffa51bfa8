//! The function's secrets, read from AWS Secrets Manager rather than from environment variables
//! that anyone allowed `lambda:GetFunctionConfiguration` can read. Without a secret (local runs)
//! the environment is all there is.
//!
//! Two layouts:
//! - one secret, `SECRET_ARN`: the keys (`MASKING_KEY`, `MASKING_KEY_PREVIOUS`, `RECOVERY_KEY`)
//!   and the connection (`DATABASE_URL`, or `username`, `password`, `host`, `port`, `dbname`);
//! - two, as AWS recommends for rotation: the keys in `SECRET_ARN`, and the database credentials
//!   in `DATABASE_SECRET_ARN`, a secret RDS (or a rotation function) manages and rotates, which
//!   holds only `username` and `password` (and, when a rotation function keeps it, `host`,
//!   `port`, `dbname`). The credentials secret is read again when the server refuses what it
//!   held (`CredentialsSource`), so a rotation does not strand warm environments; and TLS is
//!   `verify-full` unless `PGSSLMODE` says otherwise.
//!
//! Each secret is a JSON object whose fields stand for the variables named beside them below.
//! Errors name the secret's variable, the secret and the field, never a value.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::aws::{region, AwsCredentials, JsonCall, MissingSetting};
use crate::config_error::ConfigError;
use crate::store::{Credentials, CredentialsSource};

/// The variable naming the secret of the keys (and, in the one-secret layout, the connection).
pub const SECRET_VARIABLE: &str = "SECRET_ARN";

/// The variable naming the secret of the database credentials (the two-secret layout).
pub const DATABASE_SECRET_VARIABLE: &str = "DATABASE_SECRET_ARN";

/// The connection's fields, as an RDS-managed secret or a rotation function's writes them, and
/// the variable each stands for.
const CONNECTION_FIELDS: &[(&str, &str)] = &[
    ("username", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
];

/// What each secret holds: its fields (by the variable they stand for), and those it must have.
struct Layout {
    variable: &'static str,
    fields: &'static [&'static [(&'static str, &'static str)]],
    required: &'static [&'static str],
}

impl Layout {
    fn fields(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        self.fields.iter().copied().flatten()
    }
}

const KEYS: Layout = Layout {
    variable: SECRET_VARIABLE,
    fields: &[
        &[
            ("DATABASE_URL", "DATABASE_URL"),
            ("MASKING_KEY", "MASKING_KEY"),
            ("MASKING_KEY_PREVIOUS", "MASKING_KEY_PREVIOUS"),
            ("RECOVERY_KEY", "RECOVERY_KEY"),
        ],
        // The one-secret layout: the connection beside the keys.
        CONNECTION_FIELDS,
    ],
    required: &["MASKING_KEY"],
};

const DATABASE: Layout = Layout {
    variable: DATABASE_SECRET_VARIABLE,
    fields: &[CONNECTION_FIELDS],
    required: &["username", "password"],
};

/// The settings: the secrets' values (by the variable they stand for) over the environment.
pub struct Settings<E> {
    environment: E,
    from_secrets: HashMap<&'static str, String>,
    database_secret: Option<Arc<Secret>>,
}

impl<E: Fn(&str) -> Option<String>> Settings<E> {
    /// A variable's value: from a secret if one holds it, else from the environment, else the
    /// layout's default.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(value) = self.from_secrets.get(name) {
            return Some(value.clone());
        }
        let set = (self.environment)(name).filter(|value| !value.is_empty());
        // Credentials that rotate go only to a server whose certificate is checked.
        if set.is_none() && name == "PGSSLMODE" && self.database_secret.is_some() {
            return Some("verify-full".into());
        }
        set
    }

    /// With `DATABASE_SECRET_ARN`, where the store reads the credentials again after the server
    /// refuses them.
    pub fn credentials_source(&self) -> Option<Arc<dyn CredentialsSource>> {
        self.database_secret
            .clone()
            .map(|secret| secret as Arc<dyn CredentialsSource>)
    }
}

/// The settings for `environment`: each secret named is read once, and its values take the
/// place of the variables they stand for.
pub async fn settings<E: Fn(&str) -> Option<String>>(
    environment: E,
) -> Result<Settings<E>, ConfigError> {
    let named = |variable: &str| {
        environment(variable)
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
    };
    let secret = |layout: &'static Layout, variable: &str| {
        named(variable)
            .map(|id| Secret::new(layout, id, &environment))
            .transpose()
    };
    let keys = secret(&KEYS, SECRET_VARIABLE)?;
    let database = secret(&DATABASE, DATABASE_SECRET_VARIABLE)?;
    // Both at once: a start with two secrets waits for one answer from Secrets Manager, not two.
    let (keys_values, database_values) = tokio::join!(values_of(&keys), values_of(&database));
    let mut from_secrets: HashMap<&'static str, String> = HashMap::new();
    for (secret, values) in [(&keys, keys_values?), (&database, database_values?)] {
        let Some(secret) = secret else { continue };
        for (variable, value) in values {
            if environment(variable).is_some_and(|v| !v.is_empty()) {
                return Err(ConfigError::Invalid {
                    variable,
                    why: format!(
                        "it is set in the environment and in the secret {}: keep it only in the secret",
                        secret.id
                    ),
                });
            }
            if from_secrets.insert(variable, value).is_some() {
                return Err(ConfigError::Invalid {
                    variable,
                    why: format!(
                        "both {SECRET_VARIABLE} and {DATABASE_SECRET_VARIABLE} hold it: keep the connection only in the credentials secret ({DATABASE_SECRET_VARIABLE})"
                    ),
                });
            }
        }
    }
    let database_secret = database.map(Arc::new);
    if database_secret.is_some()
        && (from_secrets.contains_key("DATABASE_URL")
            || environment("DATABASE_URL").is_some_and(|v| !v.trim().is_empty()))
    {
        return Err(ConfigError::Invalid {
            variable: "DATABASE_URL",
            why: format!(
                "{DATABASE_SECRET_VARIABLE} is set, so the connection is its fields and the PG* variables (PGHOST, PGSSLROOTCERT, ...): remove DATABASE_URL, which would take their place"
            ),
        });
    }
    Ok(Settings {
        environment,
        from_secrets,
        database_secret,
    })
}

/// The fields of `secret`, if one is named; none otherwise.
async fn values_of(secret: &Option<Secret>) -> Result<HashMap<&'static str, String>, ConfigError> {
    match secret {
        Some(secret) => secret.values().await,
        None => Ok(HashMap::new()),
    }
}

/// One secret: where it is and how to read it.
struct Secret {
    layout: &'static Layout,
    id: String,
    endpoint: String,
    region: String,
    credentials: AwsCredentials,
}

impl Secret {
    fn new(
        layout: &'static Layout,
        id: String,
        environment: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let missing = |MissingSetting { variable }| {
            ConfigError::Missing {
            variable,
            hint: "a secret is named, and reading it needs the function's AWS credentials and region (Lambda sets them)",
        }
        };
        let credentials = AwsCredentials::from_lookup(environment).map_err(missing)?;
        let region = region(environment).map_err(missing)?;
        let endpoint = environment("AWS_ENDPOINT_URL_SECRETS_MANAGER")
            .or_else(|| environment("AWS_ENDPOINT_URL"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        Ok(Secret {
            layout,
            id,
            endpoint,
            region,
            credentials,
        })
    }

    /// The secret's fields now, by the variable each stands for.
    async fn values(&self) -> Result<HashMap<&'static str, String>, ConfigError> {
        let secret_string = self.secret_string().await?;
        fields_of(self.layout, &self.id, &secret_string)
    }

    /// The secret's `SecretString`.
    async fn secret_string(&self) -> Result<String, ConfigError> {
        let failed = |why: String| ConfigError::Invalid {
            variable: self.layout.variable,
            why: format!("cannot read the secret {}: {why}", self.id),
        };
        let call = JsonCall {
            endpoint: &self.endpoint,
            service: "secretsmanager",
            region: &self.region,
            target: "secretsmanager.GetSecretValue",
            body: serde_json::json!({ "SecretId": self.id }).to_string(),
        };
        let (status, body) = call
            .send(&self.credentials)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status != 200 {
            let kind = error_type(&answer, &body);
            let what_to_do = match kind.as_str() {
                "ResourceNotFoundException" => "no such secret in this account and region; check the ARN and AWS_REGION",
                "AccessDeniedException" | "AccessDenied" => "the function's role may not read it; allow secretsmanager:GetSecretValue on this secret (and kms:Decrypt on its key)",
                "DecryptionFailure" => "its KMS key cannot be used; allow kms:Decrypt on the secret's key to the function's role",
                "UnrecognizedClientException" | "InvalidSignatureException" => "the credentials were refused",
                _ => "see the type for the cause",
            };
            return Err(failed(format!(
                "Secrets Manager answered {kind} (HTTP {status}): {what_to_do}"
            )));
        }
        answer["SecretString"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| failed("it holds no SecretString (a binary secret?)".into()))
    }
}

impl CredentialsSource for Secret {
    fn read(&self) -> Pin<Box<dyn Future<Output = Result<Credentials, ConfigError>> + Send + '_>> {
        Box::pin(async move {
            let mut values = self.values().await?;
            // `values` checked that both are there (`DATABASE.required`).
            Ok(Credentials {
                user: values.remove("PGUSER").unwrap_or_default(),
                password: values.remove("PGPASSWORD").unwrap_or_default(),
            })
        })
    }
}

/// An AWS error's type, never its message (which can quote the request): `__type` in the JSON
/// protocol, `<Code>` where an authorisation layer answers in XML.
fn error_type(answer: &serde_json::Value, body: &[u8]) -> String {
    if let Some(kind) = answer["__type"].as_str() {
        return kind.rsplit('#').next().unwrap_or(kind).to_owned();
    }
    let text = String::from_utf8_lossy(body);
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_owned())
        .filter(|code| code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or_else(|| "an error".into())
}

/// The secret's fields by the variable each stands for; every required field present.
fn fields_of(
    layout: &Layout,
    secret_id: &str,
    secret_string: &str,
) -> Result<HashMap<&'static str, String>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        variable: layout.variable,
        why: format!("the secret {secret_id} {why}"),
    };
    // serde_json's errors do not quote the input; they are still not shown, as the input is a
    // secret.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(secret_string)
        .map_err(|_| {
            let example = layout
                .fields()
                .take(2)
                .map(|(field, _)| format!("\"{field}\": \"...\""))
                .collect::<Vec<_>>()
                .join(", ");
            invalid(format!("is not a JSON object such as {{{example}}}"))
        })?;
    let mut values = HashMap::new();
    for (field, variable) in layout.fields() {
        let value = match object.get(*field) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(text)) => text.clone(),
            // RDS writes the port as a number.
            Some(serde_json::Value::Number(number)) if *field == "port" => number.to_string(),
            Some(_) => return Err(invalid(format!("has a field {field} that is not a string"))),
        };
        values.insert(*variable, value);
    }
    for field in layout.required {
        let variable = layout
            .fields()
            .find(|(name, _)| name == field)
            .map_or(*field, |(_, variable)| *variable);
        if !values.contains_key(variable) {
            return Err(invalid(format!("has no field {field}")));
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stand_for_variables_and_errors_never_show_values() {
        let values = fields_of(
            &KEYS,
            "arn:s",
            r#"{"MASKING_KEY": "k-secret", "username": "u", "password": "p-secret", "port": 5432, "engine": "postgres"}"#,
        )
        .unwrap();
        assert_eq!(values["MASKING_KEY"], "k-secret");
        assert_eq!(values["PGPASSWORD"], "p-secret");
        assert_eq!(values["PGPORT"], "5432");
        assert!(!values.contains_key("DATABASE_URL"));

        for (secret, expected) in [
            ("p-secret-not-json", "is not a JSON object"),
            (r#"["p-secret"]"#, "is not a JSON object"),
            (
                r#"{"DATABASE_URL": "p-secret"}"#,
                "has no field MASKING_KEY",
            ),
            (
                r#"{"MASKING_KEY": 42, "p": "p-secret"}"#,
                "has a field MASKING_KEY that is not a string",
            ),
        ] {
            let error = fields_of(&KEYS, "arn:s", secret).unwrap_err().to_string();
            assert!(
                error.starts_with("SECRET_ARN is invalid: the secret arn:s ")
                    && error.contains(expected),
                "{error}"
            );
            assert!(!error.contains("p-secret"), "{error}");
        }
    }

    #[test]
    fn a_secret_rds_manages_holds_the_credentials_and_nothing_else_counts() {
        // What RDS writes for a managed master user password: the user and the password only.
        let values = fields_of(
            &DATABASE,
            "arn:db",
            r#"{"username": "login_etl", "password": "p-secret"}"#,
        )
        .unwrap();
        assert_eq!(
            (values["PGUSER"].as_str(), values["PGPASSWORD"].as_str()),
            ("login_etl", "p-secret")
        );
        // The keys are never read from the credentials secret.
        let values = fields_of(
            &DATABASE,
            "arn:db",
            r#"{"username": "u", "password": "p", "MASKING_KEY": "k-secret"}"#,
        )
        .unwrap();
        assert!(!values.contains_key("MASKING_KEY"));
        let error = fields_of(&DATABASE, "arn:db", r#"{"username": "u"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "DATABASE_SECRET_ARN is invalid: the secret arn:db has no field password"
        );
    }
}
