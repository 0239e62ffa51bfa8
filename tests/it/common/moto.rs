//! moto's server (an AWS API emulator from PyPI; `make test` installs it into .venv-moto) on a
//! free port, with IAM permissions enforced after the fixture's set-up calls, filled by
//! `tests/fixtures/moto_secrets_fixture.py`; stopped when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the fixture made: secrets by name, and the access keys of the users `function` (may
/// read secrets) and `stranger` (may not).
pub struct SecretsManager {
    pub endpoint: String,
    pub fixture: serde_json::Value,
    child: Child,
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

impl SecretsManager {
    pub fn start(database_url: &str, masking_key: &str) -> SecretsManager {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let calls = fixture_calls();
        let child = Command::new(format!("{ROOT}/.venv-moto/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", calls.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto is installed in .venv-moto (`make test` installs it)");
        let mut server = SecretsManager {
            endpoint: format!("http://127.0.0.1:{port}"),
            fixture: serde_json::Value::Null,
            child,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited ({status})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = fixture(
            "moto_secrets_fixture.py",
            &[&server.endpoint, database_url, masking_key],
        );
        server.fixture = serde_json::from_str(&output).unwrap();
        server
    }

    pub fn arn(&self, name: &str) -> String {
        self.fixture["arns"][name].as_str().unwrap().to_owned()
    }

    /// Creates the secret `name` with `value`, or gives it `value` as its new current version,
    /// as the `rotator` user (a rotation does this); returns its ARN.
    pub fn put_secret(&self, name: &str, value: &str) -> String {
        let key = &self.fixture["keys"]["rotator"];
        let arn = fixture(
            "moto_put_secret.py",
            &[
                &self.endpoint,
                key["id"].as_str().unwrap(),
                key["secret"].as_str().unwrap(),
                name,
                value,
            ],
        );
        arn.trim().to_owned()
    }

    /// The environment Lambda would give a function running as `user` in eu-west-1, with the
    /// SDKs' variable pointing Secrets Manager calls here.
    pub fn environment(&self, user: &str) -> Vec<(&'static str, String)> {
        let key = &self.fixture["keys"][user];
        vec![
            ("AWS_ACCESS_KEY_ID", key["id"].as_str().unwrap().to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY",
                key["secret"].as_str().unwrap().to_owned(),
            ),
            ("AWS_REGION", "eu-west-1".to_owned()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.clone()),
        ]
    }
}

/// Runs `tests/fixtures/{script}` with moto's Python; its standard output.
fn fixture(script: &str, args: &[&str]) -> String {
    let output = Command::new(format!("{ROOT}/.venv-moto/bin/python"))
        .arg(format!("{ROOT}/tests/fixtures/{script}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The fixture's `CALLS`, read from the script so that the two cannot disagree.
fn fixture_calls() -> usize {
    let script =
        std::fs::read_to_string(format!("{ROOT}/tests/fixtures/moto_secrets_fixture.py")).unwrap();
    script
        .lines()
        .find_map(|line| line.strip_prefix("CALLS = "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the fixture states CALLS")
}

impl Drop for SecretsManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
