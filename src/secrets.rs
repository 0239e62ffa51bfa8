//! The function's secrets, read once at start from AWS Secrets Manager when `SECRET_ARN` names a
//! secret, rather than from environment variables that anyone allowed
//! `lambda:GetFunctionConfiguration` can read. Without `SECRET_ARN` (local runs) the environment
//! is all there is.
//!
//! The secret is a JSON object. Its fields stand for the variables of the same name
//! (`DATABASE_URL`, `MASKING_KEY`, `MASKING_KEY_PREVIOUS`, `RECOVERY_KEY`), or, in a secret RDS
//! manages and rotates, for the connection's parts (`username`, `password`, `host`, `port`,
//! `dbname`). Errors name the secret and the field, never a value.

use std::collections::HashMap;

use crate::aws::{region, AwsCredentials, JsonCall, MissingSetting};
use crate::config::ConfigError;

/// The variable naming the secret.
pub const SECRET_VARIABLE: &str = "SECRET_ARN";

/// A secret's fields, and the variable each stands for.
const FIELDS: &[(&str, &str)] = &[
    ("DATABASE_URL", "DATABASE_URL"),
    ("MASKING_KEY", "MASKING_KEY"),
    ("MASKING_KEY_PREVIOUS", "MASKING_KEY_PREVIOUS"),
    ("RECOVERY_KEY", "RECOVERY_KEY"),
    ("username", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
];

/// The fields a secret must have.
const REQUIRED: &[&str] = &["MASKING_KEY"];

/// The settings: the secret's values (by the variable they stand for) over the environment.
pub struct Settings<E> {
    environment: E,
    from_secret: HashMap<&'static str, String>,
}

impl<E: Fn(&str) -> Option<String>> Settings<E> {
    /// A variable's value: from the secret if it holds it, else from the environment.
    pub fn get(&self, name: &str) -> Option<String> {
        match self.from_secret.get(name) {
            Some(value) => Some(value.clone()),
            None => (self.environment)(name),
        }
    }
}

/// The settings for `environment`: with `SECRET_ARN` set, its secret is read (once) and its
/// values take the place of the variables they stand for.
pub async fn settings<E: Fn(&str) -> Option<String>>(
    environment: E,
) -> Result<Settings<E>, ConfigError> {
    let Some(secret_id) = environment(SECRET_VARIABLE).filter(|v| !v.trim().is_empty()) else {
        return Ok(Settings {
            environment,
            from_secret: HashMap::new(),
        });
    };
    let secret_id = secret_id.trim().to_owned();
    const NEEDED_FOR: &str =
        "SECRET_ARN is set, and reading the secret needs the function's AWS credentials and region (Lambda sets them)";
    let missing = |MissingSetting { variable }| ConfigError::Missing {
        variable,
        hint: NEEDED_FOR,
    };
    let credentials = AwsCredentials::from_lookup(&environment).map_err(missing)?;
    let region = region(&environment).map_err(missing)?;
    let endpoint = environment("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .or_else(|| environment("AWS_ENDPOINT_URL"))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
    let secret_string = get_secret_value(&secret_id, &endpoint, &region, &credentials).await?;
    let from_secret = fields_of(&secret_id, &secret_string)?;
    for variable in from_secret.keys() {
        if environment(variable).is_some_and(|v| !v.is_empty()) {
            return Err(ConfigError::Invalid {
                variable,
                why: format!(
                    "it is set in the environment and in the secret {secret_id}: keep it only in the secret"
                ),
            });
        }
    }
    Ok(Settings {
        environment,
        from_secret,
    })
}

/// The secret's `SecretString`.
async fn get_secret_value(
    secret_id: &str,
    endpoint: &str,
    region: &str,
    credentials: &AwsCredentials,
) -> Result<String, ConfigError> {
    let failed = |why: String| ConfigError::Invalid {
        variable: SECRET_VARIABLE,
        why: format!("cannot read the secret {secret_id}: {why}"),
    };
    let call = JsonCall {
        endpoint,
        service: "secretsmanager",
        region,
        target: "secretsmanager.GetSecretValue",
        body: serde_json::json!({ "SecretId": secret_id }).to_string(),
    };
    let (status, body) = call
        .send(credentials)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != 200 {
        let kind = error_type(&answer, &body);
        let what_to_do = match kind.as_str() {
            "ResourceNotFoundException" => "no such secret in this account and region; check SECRET_ARN and AWS_REGION",
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
    secret_id: &str,
    secret_string: &str,
) -> Result<HashMap<&'static str, String>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        variable: SECRET_VARIABLE,
        why: format!("the secret {secret_id} {why}"),
    };
    // serde_json's errors do not quote the input; they are still not shown, as the input is a
    // secret.
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(secret_string).map_err(|_| {
            invalid(r#"is not a JSON object such as {"DATABASE_URL": "postgres://...", "MASKING_KEY": "..."}"#.into())
        })?;
    let mut values = HashMap::new();
    for (field, variable) in FIELDS {
        let value = match object.get(*field) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(text)) => text.clone(),
            // RDS writes the port as a number.
            Some(serde_json::Value::Number(number)) if *field == "port" => number.to_string(),
            Some(_) => return Err(invalid(format!("has a field {field} that is not a string"))),
        };
        values.insert(*variable, value);
    }
    for field in REQUIRED {
        if !values.contains_key(field) {
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
            let error = fields_of("arn:s", secret).unwrap_err().to_string();
            assert!(
                error.starts_with("SECRET_ARN is invalid: the secret arn:s ")
                    && error.contains(expected),
                "{error}"
            );
            assert!(!error.contains("p-secret"), "{error}");
        }
    }
}
