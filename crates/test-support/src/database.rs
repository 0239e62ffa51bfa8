//! Connections to the throw-away PostgreSQL (`scripts/pg.sh`) and URLs of its databases.

use tokio_postgres::{Client, NoTls};

/// A plain connection (no TLS) whose connection task runs on the current Tokio runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the throw-away PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// The same URL pointing at another database (and keeping its query string).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
