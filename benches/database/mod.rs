//! The benchmarks' database: a connection, and a fresh, migrated database of their own on the
//! server `make bench` starts (or DATABASE_URL names).

use login_etl::store::MIGRATIONS;
// Shared with the tests (login-etl-test-support).
pub use login_etl_test_support::database::{connect, with_database};

/// `database` dropped if it exists, created and migrated; returns its URL.
pub async fn fresh_database(server_url: &str, database: &str) -> String {
    let server = connect(server_url).await;
    // Two calls: a multi-statement string would run as one transaction, which these refuse.
    for sql in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        server
            .batch_execute(&sql)
            .await
            .expect("create the benchmark database");
    }
    let url = with_database(server_url, database);
    let client = connect(&url).await;
    for sql in MIGRATIONS {
        client.batch_execute(sql).await.expect("migration applies");
    }
    url
}
