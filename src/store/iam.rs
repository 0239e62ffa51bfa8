//! RDS IAM database authentication (`DATABASE_AUTH=iam`): instead of a password, a token, which
//! is a SigV4-presigned `connect` request for one host, port, user and region, valid 15 minutes.
//! The store makes a fresh one at every connect and reconnect, so none expires in use. Here too:
//! the check of the rest of the database settings that IAM authentication needs.

use std::time::{Duration, SystemTime};

use super::settings::DatabaseConfig;
use super::sslmode::SslMode;
use crate::aws::{presigned, query_escaped, region, AwsCredentials, AwsError, MissingSetting};
use crate::config_error::ConfigError;

/// How long a token is valid: RDS accepts at most 15 minutes.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// What a token is made from: the function role's credentials and region.
#[derive(Clone, Debug)]
pub struct IamAuth {
    credentials: AwsCredentials,
    region: String,
    /// The time a token is signed at; `SystemTime::now` but in tests.
    clock: fn() -> SystemTime,
}

impl IamAuth {
    pub fn new(credentials: AwsCredentials, region: String) -> Self {
        IamAuth {
            credentials,
            region,
            clock: SystemTime::now,
        }
    }

    /// The same, signing at the time `clock` gives (for tests: tokens are compared byte for
    /// byte, and a server is given one as a password ahead of time).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The token for `user` at `host:port`, as the AWS SDKs and CLI make it.
    pub fn token(&self, host: &str, port: u16, user: &str) -> Result<String, AwsError> {
        let url = format!(
            "https://{host}:{port}/?Action=connect&DBUser={}",
            query_escaped(user)
        );
        presigned(
            &self.credentials,
            "rds-db",
            &self.region,
            &url,
            TOKEN_LIFETIME,
            (self.clock)(),
        )
    }
}

impl DatabaseConfig {
    /// Connects with an RDS auth token instead of a password. A token is a credential, so it
    /// goes only over TLS; and it is signed for one host name.
    pub(super) fn with_iam_auth(
        mut self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let refuse = |why: &str| {
            Err(ConfigError::Invalid {
                variable: "DATABASE_AUTH",
                why: format!("with iam, {why}"),
            })
        };
        if matches!(self.ssl_mode, SslMode::Disable | SslMode::Prefer) {
            return refuse(&format!(
                "sslmode must be require, verify-ca or verify-full, not {}: the token is a credential",
                self.ssl_mode.name()
            ));
        }
        if self.connection.get_hosts().len() != 1 {
            return refuse("DATABASE_URL must name one host: a token is signed for one host name");
        }
        if self.connection.get_password().is_some() {
            return refuse(
                "DATABASE_URL and PGPASSWORD must hold no password: the token is the password",
            );
        }
        const NEEDED_FOR: &str =
            "DATABASE_AUTH=iam signs tokens with the function's AWS credentials and region (Lambda sets them)";
        let missing = |MissingSetting { variable }| ConfigError::Missing {
            variable,
            hint: NEEDED_FOR,
        };
        let credentials = AwsCredentials::from_lookup(lookup).map_err(missing)?;
        let region = region(lookup).map_err(missing)?;
        self.iam_auth = Some(IamAuth::new(credentials, region));
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn a_token_is_a_presigned_connect_without_its_scheme() {
        let auth = IamAuth::new(
            AwsCredentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
            ),
            "eu-west-1".into(),
        )
        .with_clock(fixed);
        let token = auth.token("db.example", 5432, "login_etl").unwrap();
        assert!(
            token.starts_with(
                "db.example:5432/?Action=connect&DBUser=login_etl&X-Amz-Algorithm=AWS4-HMAC-SHA256"
            ),
            "{token}"
        );
        assert!(token.contains(
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Frds-db%2Faws4_request"
        ));
        assert!(token.contains("X-Amz-Date=20231114T221320Z"));
        assert!(token.contains("X-Amz-Expires=900"));
        assert!(
            !token.contains("wJalrXUtnFEMI"),
            "the secret key is not in the token"
        );
        assert_eq!(token, auth.token("db.example", 5432, "login_etl").unwrap());
    }

    #[test]
    fn user_names_are_escaped_in_the_query() {
        assert_eq!(query_escaped("a b+c@d"), "a%20b%2Bc%40d");
        assert_eq!(query_escaped("login_etl-1.x~"), "login_etl-1.x~");
    }
}
