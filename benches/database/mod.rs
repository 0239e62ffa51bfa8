//! The benchmarks' database: a connection, and a fresh, migrated database of their own on the
//! server `make bench` starts (or DATABASE_URL names).

use login_etl::store::MIGRATIONS;
use tokio_postgres::{Client, NoTls};

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the benchmark PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// The server URL with another database (keeps the query string).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

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
