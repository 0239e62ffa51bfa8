//! `DATABASE_AUTH=iam`: RDS IAM authentication, checked against the rest of the database settings.

use super::database::DatabaseConfig;
use super::tls::SslMode;
use super::ConfigError;
use crate::aws::{region, AwsCredentials, MissingSetting};
use crate::iam_auth::IamAuth;

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
