//! The function's secrets from Secrets Manager (`SECRET_ARN`), against a real Secrets Manager
//! API on this machine (moto's server, which checks IAM permissions): the real binary starts
//! and stores a batch with nothing secret in its environment, and each way the secret can be
//! wrong stops the start with an error naming the secret and the field, never a value.

use crate::common::emulator::{self, Emulator};
use crate::common::moto::SecretsManager;
use crate::common::*;
use login_etl::config::Config;
use login_etl::secrets;
use login_etl::store::DatabaseConfig;
use login_etl::store::MIGRATIONS;
use login_etl_test_support::hand_to_postgres_user;
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

/// The credentials' secret's server: PostgreSQL asking the rotating users for their passwords
/// (the shared test server trusts everyone, so no password could be wrong there), with the
/// schema, and the two users of the alternating-users scheme.
struct RotatingServer {
    server: PrivateServer,
    hba_dir: std::path::PathBuf,
}

const USERS: [&str; 2] = ["rotating_a", "rotating_b"];

impl RotatingServer {
    async fn start() -> RotatingServer {
        let hba_dir = std::env::temp_dir().join(format!("login-etl-hba-{}", std::process::id()));
        std::fs::create_dir_all(&hba_dir).unwrap();
        std::fs::write(
            hba_dir.join("pg_hba.conf"),
            format!(
                "host all {} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\nlocal all all trust\n",
                USERS.join(",")
            ),
        )
        .unwrap();
        hand_to_postgres_user(&hba_dir);
        let server = PrivateServer::start(&format!(
            "-c hba_file={}",
            hba_dir.join("pg_hba.conf").display()
        ));
        let admin = connect(&server.url).await;
        for sql in MIGRATIONS {
            admin.batch_execute(sql).await.unwrap();
        }
        for user in USERS {
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {user} LOGIN PASSWORD 'first-{user}';
                     GRANT USAGE ON SCHEMA public TO {user};
                     GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {user};"
                ))
                .await
                .unwrap();
        }
        RotatingServer { server, hba_dir }
    }

    /// Changes `user`'s password in the database and ends its connections, as a rotation and a
    /// fail-over (or any dropped connection) do to warm environments.
    async fn rotate(&self, user: &str, password: &str) {
        connect(&self.server.url)
            .await
            .batch_execute(&format!(
                "ALTER ROLE {user} PASSWORD '{password}';
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ('{}', '{}');",
                USERS[0], USERS[1]
            ))
            .await
            .unwrap();
    }

    async fn count(&self) -> i64 {
        connect(&self.server.url)
            .await
            .query_one("SELECT count(*) FROM user_logins", &[])
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for RotatingServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.hba_dir);
    }
}

/// Two batches at once, so that both environments serve one; each must be stored whole.
async fn two_batches_at_once(emulator: &Emulator, round: &str) {
    let event = |n: usize| json!({ "Records": good_batch(&format!("{round}-{n}"), 0..5) });
    let (zero, one) = (event(0), event(1));
    let (first, second) = tokio::join!(
        emulator.invoke_over_http(&zero),
        emulator.invoke_over_http(&one)
    );
    for answer in [first, second] {
        assert_eq!(
            answer,
            json!({ "batchItemFailures": [] }),
            "{round}: {}",
            emulator.log()
        );
    }
}

/// Issue 24: the layout AWS recommends for rotation (the keys in SECRET_ARN, the credentials in
/// DATABASE_SECRET_ARN). Two warm environments hold what they read at start; the password
/// changes in the database and in the secret, and their connections are dropped: their next
/// batches are stored, each after reading the secret once more, and no batch fails. Then the
/// alternating-users scheme: the secret switches to the other user, the first user's password
/// changes, and again nothing fails. No password reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn warm_environments_read_rotated_credentials_again_and_no_batch_fails() {
    let rotating = RotatingServer::start().await;
    let db = DatabaseConfig::from_url(&rotating.server.url).unwrap();
    let secrets = SecretsManager::start(&rotating.server.url, KEY);
    let keys = secrets.put_secret("keys", &json!({ "MASKING_KEY": KEY }).to_string());
    let credentials = |user: &str, password: &str| {
        json!({ "username": user, "password": password, "engine": "postgres" }).to_string()
    };
    let (a, b) = (USERS[0], USERS[1]);
    let database_secret = secrets.put_secret("db", &credentials(a, &format!("first-{a}")));

    let mut env = secrets.environment("function");
    env.extend([
        ("SECRET_ARN", keys),
        ("DATABASE_SECRET_ARN", database_secret),
        ("PGHOST", "127.0.0.1".to_owned()),
        ("PGPORT", rotating.server.port.to_string()),
        ("PGDATABASE", db.connection.get_dbname().unwrap().to_owned()),
        // The layout's default is verify-full; this server has no TLS.
        ("PGSSLMODE", "disable".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let emulator = Emulator::start_with(
        &env,
        emulator::Environments {
            instances: 2,
            ..Default::default()
        },
    );
    two_batches_at_once(&emulator, "warm").await;

    // One user, a new password.
    secrets.put_secret("db", &credentials(a, "second-a"));
    rotating.rotate(a, "second-a").await;
    two_batches_at_once(&emulator, "rotated").await;

    // Alternating users: the secret names the other user, then the first one's password changes.
    secrets.put_secret("db", &credentials(b, &format!("first-{b}")));
    rotating.rotate(a, "third-a").await;
    two_batches_at_once(&emulator, "alternated").await;

    assert_eq!(rotating.count().await, 3 * 2 * 5);
    let log = emulator.log();
    let rereads = log
        .matches("reading them again from the credentials secret")
        .count();
    assert!(
        (1..=4).contains(&rereads),
        "one read per refused connect: {rereads}\n{log}"
    );
    assert!(!log.contains("batch failed"), "{log}");
    for password in ["first-rotating", "second-a", "third-a"] {
        assert!(!log.contains(password), "a password in the log:\n{log}");
    }
}

/// With the credentials' secret, DATABASE_URL would silently take the rotated password's place:
/// refused at start, naming it.
#[tokio::test]
async fn the_credentials_secret_refuses_a_database_url_beside_it() {
    let db = TestDb::new().await;
    let server = SecretsManager::start(&db.url, KEY);
    let database_secret = server.put_secret(
        "db-with-url",
        &json!({ "username": "u", "password": "p-secret" }).to_string(),
    );
    let error = start_error(
        &server,
        "function",
        &server.arn("login-etl"),
        &[("DATABASE_SECRET_ARN", database_secret.as_str())],
    )
    .await;
    assert!(
        error.starts_with("DATABASE_URL is invalid: DATABASE_SECRET_ARN is set"),
        "{error}"
    );
    assert!(!error.contains("p-secret"), "{error}");
}
