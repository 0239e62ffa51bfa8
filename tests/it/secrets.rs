//! The function's secrets from Secrets Manager (`SECRET_ARN`), against a real Secrets Manager
//! API on this machine (moto's server, which checks IAM permissions): the real binary starts
//! and stores a batch with nothing secret in its environment, and each way the secret can be
//! wrong stops the start with an error naming the secret and the field, never a value.

use crate::common::emulator::Emulator;
use crate::common::moto::SecretsManager;
use crate::common::*;
use login_etl::config::Config;
use login_etl::secrets;
use serde_json::json;

/// The error `secrets::settings` and the configuration give for `secret` read as `user`.
async fn start_error(
    server: &SecretsManager,
    user: &str,
    secret_arn: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut environment = server.environment(user);
    environment.push(("SECRET_ARN", secret_arn.to_owned()));
    for (name, value) in extra {
        environment.push((name, value.to_string()));
    }
    let lookup = move |name: &str| {
        environment
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.clone())
    };
    match secrets::settings(lookup).await {
        Err(error) => error.to_string(),
        Ok(settings) => match Config::from_lookup(|name| settings.get(name)) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{secret_arn} as {user} started"),
        },
    }
}

#[tokio::test]
async fn the_binary_reads_its_database_url_and_key_from_the_secret() {
    let db = TestDb::new().await;
    let server = SecretsManager::start(&db.url, KEY);
    let mut env = server.environment("function");
    env.push(("SECRET_ARN", server.arn("login-etl")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Nothing secret in the function's environment: the emulator gets only these.
    let emulator = Emulator::start(&env);
    let answer = emulator.invoke(&json!({ "Records": good_batch("secret", 0..3) }));
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [] }),
        "{}",
        emulator.log()
    );
    assert_eq!(db.count().await, 3);
    let masked: String = db
        .client()
        .await
        .query_one("SELECT masked_ip FROM user_logins LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        masked,
        expected_mask("199.172.111.135"),
        "masked with the secret's key"
    );
}

#[tokio::test]
async fn each_wrong_secret_stops_the_start_naming_the_secret_and_the_field() {
    let db = TestDb::new().await;
    let server = SecretsManager::start(&db.url, KEY);
    let missing = server
        .arn("login-etl")
        .replace(":secret:login-etl", ":secret:no-such-secret");
    let cases = [
        ("function", missing.clone(), "ResourceNotFoundException"),
        ("function", server.arn("not-json"), "is not a JSON object"),
        (
            "function",
            server.arn("no-masking-key"),
            "has no field MASKING_KEY",
        ),
        ("stranger", server.arn("login-etl"), "AccessDenied"),
    ];
    for (user, arn, expected) in cases {
        let error = start_error(&server, user, &arn, &[]).await;
        assert!(
            error.starts_with("SECRET_ARN is invalid:")
                && error.contains(&arn)
                && error.contains(expected),
            "{user} {arn}: {error}"
        );
        for value in [KEY, db.url.as_str(), "postgres://not-a-json-object"] {
            assert!(!error.contains(value), "the error shows a value: {error}");
        }
    }
    // A variable in the environment and in the secret: which one is meant is not guessed.
    let error = start_error(
        &server,
        "function",
        &server.arn("login-etl"),
        &[("MASKING_KEY", KEY)],
    )
    .await;
    assert!(
        error.starts_with("MASKING_KEY is invalid: it is set in the environment and in the secret"),
        "{error}"
    );
    assert!(!error.contains(KEY), "{error}");
}
