//! A real PgBouncer (Debian's package; `make test` and `make bench` install it) in front of the
//! throw-away PostgreSQL, on a free port, stopped when dropped. Every database of the server is
//! reachable through it, each a pool of its own.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{hand_to_postgres_user, is_root};

#[derive(Clone, Copy, Debug)]
pub enum PoolMode {
    /// A server connection per client for its whole session.
    Session,
    /// A server connection per transaction: clients share them, and session state leaks.
    Transaction,
}

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl PgBouncer {
    /// In front of `server`, logging in as its user; at most `pool_size` server connections per
    /// database, whatever the number of clients. Its files go to `dir` (else a temporary one).
    pub fn start(
        server: &tokio_postgres::Config,
        mode: PoolMode,
        pool_size: usize,
        dir: Option<PathBuf>,
    ) -> PgBouncer {
        let binary = "/usr/sbin/pgbouncer";
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: `make test` and `make bench` install Debian's pgbouncer package"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            dir.unwrap_or_else(|| std::env::temp_dir().join(format!("login-etl-pgbouncer-{port}")));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let host = match server.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "127.0.0.1".into(),
        };
        let upstream_port = server.get_ports().first().copied().unwrap_or(5432);
        let user = server.get_user().unwrap_or("postgres");
        let mut upstream = format!("host={host} port={upstream_port} user={user}");
        if let Some(password) = server.get_password() {
            let password = String::from_utf8_lossy(password);
            upstream.push_str(&format!(" password={password}"));
        }
        // The throw-away server trusts local connections, so PgBouncer does too (its users must
        // still be listed); it logs in to the server as `server`'s user. The admin console
        // (database `pgbouncer`) lets a test RECONNECT.
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        let ini = format!(
            "[databases]\n\
             * = {upstream}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             admin_users = {user}\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        // PgBouncer refuses to run as root, like PostgreSQL; `-u` makes it switch user itself, so
        // that the child here is PgBouncer (and killing it stops it).
        let mut command = Command::new(binary);
        hand_to_postgres_user(&dir);
        if is_root() {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let mut bouncer = PgBouncer { port, child, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return bouncer;
            }
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited ({status}): {}", bouncer.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pgbouncer did not listen on port {port}: {}", bouncer.log());
    }

    /// PgBouncer's admin console, for commands such as `RECONNECT`.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pgbouncer?sslmode=disable",
            self.port
        )
    }

    /// PgBouncer has not exited (crashed) since it started.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
