//! The shared PgBouncer (login-etl-test-support) in front of the test PostgreSQL, with the
//! tests' own way to reach a `TestDb` through it.

use std::ops::{Deref, DerefMut};

use login_etl::store::DatabaseConfig;
pub use login_etl_test_support::pgbouncer::PoolMode;

use super::{admin_url, server_port, url_through, TestDb};

pub struct PgBouncer(login_etl_test_support::pgbouncer::PgBouncer);

impl PgBouncer {
    /// At most `pool_size` server connections per database, whatever the number of clients.
    pub fn start(mode: PoolMode, pool_size: usize) -> PgBouncer {
        Self::start_in_front_of(server_port(), mode, pool_size)
    }

    /// `start`, in front of the server on `upstream` (a private one, or none at all), logging in
    /// as the test server's user.
    pub fn start_in_front_of(upstream: u16, mode: PoolMode, pool_size: usize) -> PgBouncer {
        let admin = DatabaseConfig::from_url(&admin_url()).unwrap().connection;
        let mut server = tokio_postgres::Config::new();
        server.host("127.0.0.1").port(upstream);
        if let Some(user) = admin.get_user() {
            server.user(user);
        }
        if let Some(password) = admin.get_password() {
            server.password(password);
        }
        PgBouncer(login_etl_test_support::pgbouncer::PgBouncer::start(
            &server, mode, pool_size, None,
        ))
    }

    /// `db`'s URL through the pooler.
    pub fn url_for(&self, db: &TestDb) -> String {
        url_through(db, self.0.port)
    }
}

impl DerefMut for PgBouncer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Deref for PgBouncer {
    type Target = login_etl_test_support::pgbouncer::PgBouncer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
