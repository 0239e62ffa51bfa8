//! Capacity: how far the function scales with concurrent instances, direct and through PgBouncer.
//!
//! `make bench` runs this after the ingest benchmark on the durable throw-away PostgreSQL; by
//! hand: `cargo bench --bench capacity -- [--runs N] [--seconds S] [--quick]` with DATABASE_URL
//! set (`-- --help` lists the options). It starts a PgBouncer of its own (Debian's
//! `/usr/sbin/pgbouncer`) and stops it at the end.
//!
//! An instance is one Lambda execution environment: a `Processor` with its own `Store` (its own
//! connection), driven by its own tokio task on a multi-threaded runtime, handling one SQS batch
//! at a time, back to back. Every batch is fresh (distinct messageIds, all first deliveries; the
//! bodies come from `benches/workload`, ~1% of them invalid). For 1, 2, 4, 8 and 16 instances at
//! batch sizes 10 and 100, in two set-ups:
//! - `direct`: `StatementMode::Prepared`, one PostgreSQL connection per instance, as deployed
//!   without a pooler (batches of 100 go by binary COPY);
//! - `pgbouncer`: `StatementMode::Unnamed` (PREPARED_STATEMENTS=false) through PgBouncer in
//!   transaction mode with `default_pool_size = 4`: fewer server connections than instances at
//!   8 and 16, so instances queue for a server connection.
//!
//! Each configuration truncates `user_logins`, warms up, then measures for a fixed wall time:
//! batches that complete inside the window count, each with its latency (the `process` call).
//! Records/s sums the instances; batches/s is also the commit rate (one transaction per batch).
//! The scaling ratio divides records/s at N instances by records/s at 1 instance, same set-up,
//! batch size and run; medians over runs, latency percentiles pooled over runs. Two more
//! measurements give context: the server's commit ceiling (N connections committing one-row
//! INSERTs back to back, nothing else) and the CPU each side used during the window.
//!
//! Finally the cost of PREPARED_STATEMENTS=false on one direct connection: handler throughput
//! with `Unnamed` divided by `Prepared` at batch sizes 10, 100 and 1000, in the same run.
//!
//! Results go to stdout (markdown) and to CSV (`target/capacity.csv`,
//! `target/capacity-statements.csv`); `scripts/plot_capacity.py` draws `docs/capacity.png`, and
//! `make bench` renders the tables into docs/benchmarks.md.

#[path = "../args/mod.rs"]
mod args;
#[path = "../database/mod.rs"]
mod database;
#[path = "../stats/mod.rs"]
mod stats;
#[path = "../workload/mod.rs"]
mod workload;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use clap::Parser;
use login_etl::handler::Processor;
use login_etl::store::DatabaseConfig;
use login_etl::store::StatementMode;
use login_etl::store::{Store, StoreOptions};
use login_etl_core::mask::Masker;
use login_etl_test_support::pgbouncer::PoolMode;
use tokio::time::Instant;
use tokio_postgres::Client;

use database::connect;
use stats::{median, percentile_ms};

const BENCH_DATABASE: &str = "login_etl_capacity";

/// Capacity: concurrent instances of the function, direct to PostgreSQL and through a PgBouncer
/// it starts, the server's commit ceiling, and PREPARED_STATEMENTS=false on one connection.
///
/// Needs DATABASE_URL; `make bench` starts a durable PostgreSQL and runs it. The instances'
/// table and the commit ceiling go to --csv, the statements' comparison beside it
/// (-statements.csv).
#[derive(Parser)]
struct Options {
    /// Runs of every configuration: medians over them, latency percentiles pooled
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        default_value_if("quick", "true", "1")
    )]
    runs: usize,
    /// Seconds each configuration is measured for
    #[arg(
        long,
        value_name = "S",
        default_value_t = 3.0,
        default_value_if("quick", "true", "1")
    )]
    seconds: f64,
    /// Seconds of warm-up before each measured window
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.5,
        default_value_if("quick", "true", "0.25")
    )]
    warmup: f64,
    /// Numbers of concurrent instances, comma-separated
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1,2,4,8,16"
    )]
    instances: Vec<usize>,
    /// Batch sizes of the instances, comma-separated
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "10,100"
    )]
    sizes: Vec<usize>,
    /// Batch sizes of the PREPARED_STATEMENTS=false comparison, comma-separated
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "10,100,1000"
    )]
    statement_sizes: Vec<usize>,
    /// PgBouncer's default_pool_size: server connections the instances share
    #[arg(long, value_name = "N", default_value_t = 4)]
    pool_size: usize,
    /// Leave out the set-up through PgBouncer
    #[arg(long)]
    no_pgbouncer: bool,
    /// A quick look: 1 run of 1 s after 0.25 s of warm-up (unless --runs, --seconds or --warmup
    /// say otherwise)
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    common: args::Common,
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

/// Debian's PgBouncer (login-etl-test-support) in transaction mode in front of the benchmark
/// server, stopped when dropped. Its directory is `CAPACITY_PGBOUNCER_DIR` when set
/// (scripts/bench.sh sets it, to stop it even if this process is killed), else a temporary one.
struct PgBouncer(login_etl_test_support::pgbouncer::PgBouncer);

impl PgBouncer {
    fn start(server: &tokio_postgres::Config, pool_size: usize) -> PgBouncer {
        PgBouncer(login_etl_test_support::pgbouncer::PgBouncer::start(
            server,
            PoolMode::Transaction,
            pool_size,
            std::env::var_os("CAPACITY_PGBOUNCER_DIR").map(PathBuf::from),
        ))
    }

    /// The benchmark database through the pooler.
    fn url(&self, server: &tokio_postgres::Config) -> String {
        let user = server.get_user().unwrap_or("postgres");
        format!(
            "postgres://{user}@127.0.0.1:{}/{BENCH_DATABASE}?sslmode=disable",
            self.0.port
        )
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// CPU time in clock ticks (USER_HZ, 100 on Linux): the machine's busy time, this process, the
/// PostgreSQL server (postmaster and its children), and PgBouncer.
#[derive(Clone, Copy, Default)]
struct Cpu {
    machine_busy: u64,
    client: u64,
    server: u64,
    bouncer: u64,
}

const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime and the parent pid of a process, from /proc/PID/stat.
fn proc_ticks(pid: &str) -> Option<(u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime, ppid))
}

impl Cpu {
    fn now(postmaster: u32, bouncer: Option<u32>) -> Cpu {
        let machine_busy = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .next()
            .map(|line| {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|n| n.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
                // (guest time is already in user).
                v.iter().take(8).sum::<u64>() - v.get(3).unwrap_or(&0) - v.get(4).unwrap_or(&0)
            })
            .unwrap_or(0);
        let client = proc_ticks("self").map_or(0, |(t, _)| t);
        let mut server = 0;
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if let Some((ticks, ppid)) = proc_ticks(pid) {
                    if ppid == postmaster || pid.parse() == Ok(postmaster) {
                        server += ticks;
                    }
                }
            }
        }
        let bouncer = bouncer
            .and_then(|pid| proc_ticks(&pid.to_string()))
            .map_or(0, |(t, _)| t);
        Cpu {
            machine_busy,
            client,
            server,
            bouncer,
        }
    }

    /// Cores used between `self` and `later` over `seconds`.
    fn cores_until(&self, later: &Cpu, seconds: f64) -> [f64; 4] {
        let c = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SECOND / seconds;
        [
            c(self.machine_busy, later.machine_busy),
            c(self.client, later.client),
            c(self.server, later.server),
            c(self.bouncer, later.bouncer),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Instances

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Direct,
    PgBouncer,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Direct => "direct",
            Setup::PgBouncer => "pgbouncer",
        }
    }
    fn mode(self) -> StatementMode {
        match self {
            Setup::Direct => StatementMode::Prepared,
            Setup::PgBouncer => StatementMode::Unnamed,
        }
    }
}

/// The records an instance sends, batch after batch: the workload's bodies, with fresh
/// messageIds written into them before every batch.
struct Template {
    batches: Vec<Vec<SqsMessage>>,
    next: usize,
}

/// Records per instance template: bodies repeat after this many records, messageIds never do.
const TEMPLATE_RECORDS: usize = 2_000;

impl Template {
    fn new(seed: u64, batch_size: usize) -> Template {
        let count = TEMPLATE_RECORDS.max(batch_size).div_ceil(batch_size) * batch_size;
        let mut records = workload::records(seed, count);
        for record in &mut records {
            // Every batch is a first delivery: nothing to look up as possibly stored.
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
        }
        Template {
            batches: records.chunks(batch_size).map(<[_]>::to_vec).collect(),
            next: 0,
        }
    }

    /// The next batch, its messageIds made unique with `tag` (per instance and configuration)
    /// and `sequence`.
    fn next_batch(&mut self, tag: u64, sequence: &mut u64) -> &[SqsMessage] {
        let i = self.next;
        self.next = (self.next + 1) % self.batches.len();
        for record in &mut self.batches[i] {
            let id = record.message_id.get_or_insert_with(String::new);
            id.clear();
            write!(id, "{:08x}-0000-4000-8000-{:012x}", tag, *sequence).unwrap();
            *sequence += 1;
        }
        &self.batches[i]
    }
}

/// What one instance measured in the window.
#[derive(Default)]
struct Measured {
    records: usize,
    stored: usize,
    batches: usize,
    latencies: Vec<Duration>,
}

/// Runs `processor` on fresh batches back to back until a batch completes after `end`; counts
/// the batches that complete in `[measure_from, end)`.
async fn drive(
    processor: Arc<Processor>,
    mut template: Template,
    tag: u64,
    measure_from: Instant,
    end: Instant,
) -> Measured {
    let mut measured = Measured::default();
    let mut sequence = 0;
    loop {
        let batch = template.next_batch(tag, &mut sequence);
        let begun = Instant::now();
        let outcome = processor
            .process(batch, begun + Duration::from_secs(60))
            .await
            .expect("the handler processes the batch");
        let done = Instant::now();
        assert_eq!(outcome.failed, 0, "no row may fail in the benchmark");
        if done >= end {
            return measured;
        }
        if done >= measure_from {
            measured.records += batch.len();
            measured.stored += outcome.stored;
            measured.batches += 1;
            measured.latencies.push(done - begun);
        }
    }
}

/// One configuration's result in one run.
struct Sample {
    records_per_s: f64,
    batches_per_s: f64,
    latencies: Vec<Duration>,
    cores: [f64; 4],
}

struct Bench {
    admin: Client,
    postmaster: u32,
    bouncer_pid: Option<u32>,
    warmup: Duration,
    window: Duration,
    /// Distinct per instance and configuration, so messageIds never repeat in a process.
    next_tag: u64,
}

impl Bench {
    async fn truncate(&self) {
        self.admin
            .batch_execute("TRUNCATE user_logins, capacity_commit_probe")
            .await
            .expect("truncate");
    }

    /// `processors.len()` instances at once, each on its own task, for one window.
    async fn run(&mut self, processors: &[Arc<Processor>], batch_size: usize) -> Sample {
        self.truncate().await;
        let start = Instant::now() + Duration::from_millis(20);
        let measure_from = start + self.warmup;
        let end = measure_from + self.window;
        let mut tasks = Vec::new();
        for (i, processor) in processors.iter().enumerate() {
            self.next_tag += 1;
            let template = Template::new(1000 + i as u64, batch_size);
            let processor = processor.clone();
            let tag = self.next_tag;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start).await;
                drive(processor, template, tag, measure_from, end).await
            }));
        }
        let (cores, measured) = self.watch(measure_from, end, tasks).await;
        let seconds = self.window.as_secs_f64();
        let records: usize = measured.iter().map(|m| m.records).sum();
        let batches: usize = measured.iter().map(|m| m.batches).sum();
        Sample {
            records_per_s: records as f64 / seconds,
            batches_per_s: batches as f64 / seconds,
            latencies: measured.into_iter().flat_map(|m| m.latencies).collect(),
            cores,
        }
    }

    /// Reads the CPU counters at the window's edges and collects the tasks.
    async fn watch<T: Send + 'static>(
        &self,
        measure_from: Instant,
        end: Instant,
        tasks: Vec<tokio::task::JoinHandle<T>>,
    ) -> ([f64; 4], Vec<T>) {
        tokio::time::sleep_until(measure_from).await;
        let before = Cpu::now(self.postmaster, self.bouncer_pid);
        tokio::time::sleep_until(end).await;
        let after = Cpu::now(self.postmaster, self.bouncer_pid);
        let cores = before.cores_until(&after, self.window.as_secs_f64());
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("an instance panicked"));
        }
        (cores, results)
    }

    /// The server's commit ceiling: `clients` connections, each committing a one-row INSERT
    /// back to back, nothing else. Returns commits/s.
    async fn commit_ceiling(&mut self, clients: &[Arc<Client>]) -> (f64, [f64; 4]) {
        self.truncate().await;
        let start = Instant::now() + Duration::from_millis(20);
        let measure_from = start + self.warmup;
        let end = measure_from + self.window;
        let mut tasks = Vec::new();
        for client in clients {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let insert = client
                    .prepare("INSERT INTO capacity_commit_probe VALUES (1)")
                    .await
                    .unwrap();
                tokio::time::sleep_until(start).await;
                let mut commits = 0usize;
                loop {
                    client.execute(&insert, &[]).await.unwrap();
                    let done = Instant::now();
                    if done >= end {
                        return commits;
                    }
                    if done >= measure_from {
                        commits += 1;
                    }
                }
            }));
        }
        let (cores, commits) = self.watch(measure_from, end, tasks).await;
        let total: usize = commits.iter().sum();
        (total as f64 / self.window.as_secs_f64(), cores)
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics, connections

/// A fresh, migrated benchmark database with the commit probe's table; returns its URL.
async fn fresh_database(server_url: &str) -> String {
    let url = database::fresh_database(server_url, BENCH_DATABASE).await;
    connect(&url)
        .await
        .batch_execute("CREATE TABLE capacity_commit_probe (n integer)")
        .await
        .expect("create the commit probe table");
    url
}

async fn setting(client: &Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "?".into())
}

async fn processors(url: &str, mode: StatementMode, count: usize) -> Vec<Arc<Processor>> {
    let masker = Masker::new(workload::MASKING_KEY.as_bytes()).unwrap();
    let config = DatabaseConfig::from_url(url).expect("the URL parses");
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let options = StoreOptions {
            statement_mode: mode,
            ..StoreOptions::default()
        };
        let store = Store::connect(
            config.clone(),
            options,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("connect to the benchmark database");
        out.push(Arc::new(Processor::new(masker.clone(), store)));
    }
    out
}

fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    let n = items.len();
    (0..n).map(|k| items[(k + by) % n]).collect()
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options: Options = args::parse();
    assert!(options.runs >= 1 && options.seconds > 0.0);
    let server_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL must name a PostgreSQL server; `make bench` starts a durable one")
    });
    let server = tokio_postgres::Config::from_str(&server_url).expect("DATABASE_URL parses");
    let url = fresh_database(&server_url).await;
    let admin = connect(&url).await;

    let backend: i32 = admin
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let postmaster = proc_ticks(&backend.to_string()).map_or(0, |(_, ppid)| ppid);
    let version: String = admin
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cores} cores; server: {version}");
    let fsync = setting(&admin, "fsync").await;
    let synchronous_commit = setting(&admin, "synchronous_commit").await;
    println!(
        "durability: fsync={fsync} synchronous_commit={synchronous_commit} wal_sync_method={} commit_delay={}",
        setting(&admin, "wal_sync_method").await,
        setting(&admin, "commit_delay").await,
    );
    if fsync != "on" || synchronous_commit != "on" {
        println!(
            "WARNING: the server is not durable; start it with `PG_DURABLE=1 scripts/pg.sh start`"
        );
    }
    if postmaster == 0 {
        println!("WARNING: the server's processes are not on this machine: no server CPU column");
    }

    let bouncer = (!options.no_pgbouncer).then(|| PgBouncer::start(&server, options.pool_size));
    let max_instances = options.instances.iter().copied().max().unwrap_or(1);
    let mut setups = vec![(
        Setup::Direct,
        processors(&url, Setup::Direct.mode(), max_instances).await,
    )];
    if let Some(bouncer) = &bouncer {
        setups.push((
            Setup::PgBouncer,
            processors(
                &bouncer.url(&server),
                Setup::PgBouncer.mode(),
                max_instances,
            )
            .await,
        ));
        println!(
            "pgbouncer: {} transaction mode, default_pool_size={}",
            String::from_utf8_lossy(
                &Command::new("/usr/sbin/pgbouncer")
                    .arg("--version")
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            )
            .lines()
            .next()
            .unwrap_or("?"),
            options.pool_size
        );
    }
    let mut bench = Bench {
        admin,
        postmaster,
        bouncer_pid: bouncer.as_ref().map(PgBouncer::pid),
        warmup: Duration::from_secs_f64(options.warmup),
        window: Duration::from_secs_f64(options.seconds),
        next_tag: 0,
    };
    println!(
        "{} runs of {:.1} s per configuration after {:.2} s of warm-up; medians over runs, latency percentiles pooled over runs",
        options.runs, options.seconds, options.warmup
    );

    // Concurrent instances. samples[setup][size][instances] = one Sample per run.
    let n_instances = options.instances.len();
    let mut samples: Vec<Vec<Vec<Vec<Sample>>>> = (0..setups.len())
        .map(|_| {
            (0..options.sizes.len())
                .map(|_| (0..n_instances).map(|_| Vec::new()).collect())
                .collect()
        })
        .collect();
    let mut ceiling: Vec<Vec<(f64, [f64; 4])>> = vec![Vec::new(); n_instances];
    let probe_clients: Vec<Arc<Client>> = {
        let mut clients = Vec::new();
        for _ in 0..max_instances {
            clients.push(Arc::new(connect(&url).await));
        }
        clients
    };
    for run in 0..options.runs {
        eprintln!("run {}/{}", run + 1, options.runs);
        for (s, (_, processors)) in setups.iter().enumerate() {
            for (z, &size) in options.sizes.iter().enumerate() {
                // Rotate the order of instance counts so none always runs first or last.
                for k in rotated(&(0..n_instances).collect::<Vec<_>>(), run) {
                    let n = options.instances[k];
                    let sample = bench.run(&processors[..n], size).await;
                    samples[s][z][k].push(sample);
                }
            }
        }
        for k in rotated(&(0..n_instances).collect::<Vec<_>>(), run) {
            let n = options.instances[k];
            ceiling[k].push(bench.commit_ceiling(&probe_clients[..n]).await);
        }
    }

    println!("\n### Concurrent instances\n");
    println!(
        "| set-up | batch | instances | records/s | x 1 instance | batches/s (= commits/s) | batch p50 ms | batch p99 ms | CPU cores busy: machine / client / server / pgbouncer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    // The CSVs give the printed tables' precision: docs/benchmarks.md's tables are made from them.
    let mut csv = String::from(
        "setup,batch_size,instances,records_per_s,scaling,batches_per_s,p50_ms,p99_ms,cpu_machine,cpu_client,cpu_server,cpu_pgbouncer,runs,seconds\n",
    );
    for (s, (setup, _)) in setups.iter().enumerate() {
        for (z, &size) in options.sizes.iter().enumerate() {
            let base = options.instances.iter().position(|&n| n == 1);
            for (k, &n) in options.instances.iter().enumerate() {
                let runs = &samples[s][z][k];
                let records: Vec<f64> = runs.iter().map(|r| r.records_per_s).collect();
                let batches: Vec<f64> = runs.iter().map(|r| r.batches_per_s).collect();
                let scaling = base.map_or(f64::NAN, |b| {
                    let ratios: Vec<f64> = runs
                        .iter()
                        .zip(&samples[s][z][b])
                        .map(|(r, one)| r.records_per_s / one.records_per_s)
                        .collect();
                    median(&ratios)
                });
                let mut latencies: Vec<Duration> =
                    runs.iter().flat_map(|r| r.latencies.clone()).collect();
                let p50 = percentile_ms(&mut latencies, 50.0);
                let p99 = percentile_ms(&mut latencies, 99.0);
                let cpu: Vec<f64> = (0..4)
                    .map(|c| median(&runs.iter().map(|r| r.cores[c]).collect::<Vec<_>>()))
                    .collect();
                println!(
                    "| {} | {size} | {n} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} |",
                    setup.name(),
                    median(&records),
                    scaling,
                    median(&batches),
                    p50,
                    p99,
                    cpu[0],
                    cpu[1],
                    cpu[2],
                    cpu[3],
                );
                writeln!(
                    csv,
                    "{},{size},{n},{:.0},{:.2},{:.0},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{},{}",
                    setup.name(),
                    median(&records),
                    scaling,
                    median(&batches),
                    p50,
                    p99,
                    cpu[0],
                    cpu[1],
                    cpu[2],
                    cpu[3],
                    options.runs,
                    options.seconds,
                )
                .unwrap();
            }
        }
    }
    println!(
        "\nrecords/s counts every SQS record (~1% are invalid and stored nowhere); each batch is one transaction, so batches/s is the commit rate."
    );
    println!("x 1 instance = median over runs of (records/s at N / records/s at 1), same set-up, batch size and run.");
    println!("CPU: cores busy during the window (of {cores}): the whole machine (other work included), this process (the instances), PostgreSQL's processes, PgBouncer.");

    println!("\n### Server commit ceiling: one-row INSERTs, autocommit, direct connections\n");
    println!("| connections | commits/s | CPU cores busy: machine / client / server |");
    println!("| ---: | ---: | --- |");
    for (k, &n) in options.instances.iter().enumerate() {
        let commits: Vec<f64> = ceiling[k].iter().map(|c| c.0).collect();
        let cpu: Vec<f64> = (0..3)
            .map(|c| median(&ceiling[k].iter().map(|r| r.1[c]).collect::<Vec<_>>()))
            .collect();
        println!(
            "| {n} | {:.0} | {:.2} / {:.2} / {:.2} |",
            median(&commits),
            cpu[0],
            cpu[1],
            cpu[2]
        );
        writeln!(
            csv,
            "commit-ceiling,1,{n},{:.0},,{:.0},,,{:.2},{:.2},{:.2},0,{},{}",
            median(&commits),
            median(&commits),
            cpu[0],
            cpu[1],
            cpu[2],
            options.runs,
            options.seconds,
        )
        .unwrap();
    }

    // PREPARED_STATEMENTS=false on one direct connection.
    if !options.statement_sizes.is_empty() {
        let direct = processors(&url, StatementMode::Unnamed, 1).await;
        let prepared = setups[0].1[..1].to_vec();
        let modes = [
            (StatementMode::Prepared, prepared),
            (StatementMode::Unnamed, direct),
        ];
        let mut by_size: Vec<[Vec<Sample>; 2]> = (0..options.statement_sizes.len())
            .map(|_| [Vec::new(), Vec::new()])
            .collect();
        for run in 0..options.runs {
            for (z, &size) in options.statement_sizes.iter().enumerate() {
                for m in rotated(&[0, 1], run + z) {
                    let sample = bench.run(&modes[m].1, size).await;
                    by_size[z][m].push(sample);
                }
            }
        }
        println!("\n### PREPARED_STATEMENTS=false on one direct connection (one instance)\n");
        println!("| batch | Prepared records/s | Unnamed records/s | Unnamed / Prepared | Prepared p50 ms | Unnamed p50 ms |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        let mut statements_csv = String::from(
            "batch_size,prepared_records_per_s,unnamed_records_per_s,ratio,prepared_p50_ms,unnamed_p50_ms,runs,seconds\n",
        );
        for (z, &size) in options.statement_sizes.iter().enumerate() {
            let [prepared, unnamed] = &by_size[z];
            let ratio = median(
                &prepared
                    .iter()
                    .zip(unnamed)
                    .map(|(p, u)| u.records_per_s / p.records_per_s)
                    .collect::<Vec<_>>(),
            );
            let rate =
                |s: &[Sample]| median(&s.iter().map(|r| r.records_per_s).collect::<Vec<_>>());
            let p50 = |s: &[Sample]| {
                percentile_ms(
                    &mut s
                        .iter()
                        .flat_map(|r| r.latencies.clone())
                        .collect::<Vec<_>>(),
                    50.0,
                )
            };
            println!(
                "| {size} | {:.0} | {:.0} | {ratio:.2} | {:.2} | {:.2} |",
                rate(prepared),
                rate(unnamed),
                p50(prepared),
                p50(unnamed),
            );
            writeln!(
                statements_csv,
                "{size},{:.0},{:.0},{ratio:.2},{:.2},{:.2},{},{}",
                rate(prepared),
                rate(unnamed),
                p50(prepared),
                p50(unnamed),
                options.runs,
                options.seconds,
            )
            .unwrap();
        }
        println!("Unnamed / Prepared = median over runs of the two records/s in the same run (order alternating).");
        args::write_csv(&options.common.csv_beside("statements"), &statements_csv);
    }

    args::write_csv(&options.common.csv, &csv);

    // The instances' connections go before PgBouncer does.
    drop(setups);
    drop(bouncer);
}
