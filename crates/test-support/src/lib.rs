//! What login-etl's tests (tests/it) and benchmarks (benches/) both start: a PgBouncer in front
//! of the throw-away PostgreSQL, connections to it, and the user the servers run as. Fixtures
//! only the tests use stay in tests/it/common.

pub mod database;
pub mod pgbouncer;

/// Run as root, hands `dir` to the `postgres` user, which the servers run as (PostgreSQL and
/// PgBouncer refuse root) and which must own or write what is in it.
pub fn hand_to_postgres_user(dir: &std::path::Path) {
    if is_root() {
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown -R postgres {}", dir.display());
    }
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
