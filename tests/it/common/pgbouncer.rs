//! The shared PgBouncer (login-etl-test-support) in front of the test PostgreSQL, with the
//! tests' own way to reach a `TestDb` through it.

use std::ops::Deref;

use login_etl::config::DatabaseConfig;
pub use login_etl_test_support::pgbouncer::PoolMode;

use super::{admin_url, url_through, TestDb};

pub struct PgBouncer(login_etl_test_support::pgbouncer::PgBouncer);

impl PgBouncer {
    /// At most `pool_size` server connections per database, whatever the number of clients.
    pub fn start(mode: PoolMode, pool_size: usize) -> PgBouncer {
        let server = DatabaseConfig::from_url(&admin_url()).unwrap().connection;
        PgBouncer(login_etl_test_support::pgbouncer::PgBouncer::start(
            &server, mode, pool_size, None,
        ))
    }

    /// `db`'s URL through the pooler.
    pub fn url_for(&self, db: &TestDb) -> String {
        url_through(db, self.0.port)
    }
}

impl Deref for PgBouncer {
    type Target = login_etl_test_support::pgbouncer::PgBouncer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
