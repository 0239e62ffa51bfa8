//! RDS IAM database authentication: instead of a password, a token, which is a SigV4-presigned
//! `connect` request for one host, port, user and region, valid 15 minutes. The store makes a
//! fresh one at every connect and reconnect, so none expires in use.

use std::time::{Duration, SystemTime};

use crate::aws::{presigned, query_escaped, AwsCredentials, AwsError};

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
