//! Partitioned against unpartitioned user_logins, in one run: what the daily partitions cost the
//! writes, what they save retention, and the index size per partition.
//!
//! `make bench` runs it against its durable throw-away PostgreSQL; by hand:
//! `cargo bench --bench partitions -- [--runs N] [--rows N] [--quick]` (`-- --help` lists the
//! options). Results go to stdout and to CSV (`--csv`, and `-retention.csv` beside it), which
//! `make bench` renders into docs/benchmarks.md.
//!
//! Two databases, both migrated the same way: in one user_logins stays partitioned by day
//! (migration 005), with the 90 past days' partitions a deployment keeping 90 days has; in the
//! other it is turned back into a single table with the same columns
//! and the same unique index on (message_id, create_date), so the function's statements are the
//! same and only the layout differs. Each run loads the same workload (benches/workload, sent
//! today) into both, in alternating order, with the real handler, at batch 100 (INSERT) and
//! 1,000 (COPY); the ratio is the median of the runs' partitioned/unpartitioned ratios. Then it
//! ends the day's rows in both ways: the partition job's DROP of the day's partition against
//! `DELETE ... WHERE create_date = today` followed by the VACUUM that gives the space back.
//! Last, the upgrade: migration 005 turning the single table, loaded again, into partitions.

#[path = "../args/mod.rs"]
mod args;
#[path = "../database/mod.rs"]
mod database;
#[path = "../workload/mod.rs"]
mod workload;

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;
use login_etl::handler::Processor;
use login_etl::store::DatabaseConfig;
use login_etl::store::{Store, StoreOptions, MIGRATIONS};
use login_etl_core::mask::Masker;
use tokio::time::Instant;
use tokio_postgres::Client;

use database::{connect, fresh_database};

const BATCH_SIZES: [usize; 2] = [100, 1_000];

/// Turns the migrated, partitioned user_logins into one table with the same columns and
/// unique index: the layout before migration 005, with today's statements.
const UNPARTITION: &str = "
BEGIN;
CREATE TABLE user_logins_flat (LIKE user_logins INCLUDING DEFAULTS);
CREATE UNIQUE INDEX user_logins_flat_key ON user_logins_flat (message_id, create_date);
DROP VIEW user_logins_readable;
DROP TABLE user_logins;
ALTER TABLE user_logins_flat RENAME TO user_logins;
COMMIT;";

/// Partitions: user_logins partitioned by day against one table, in one run: the function's
/// writes into each, the day's partition's size, ending a day's rows (DROP against DELETE and
/// VACUUM), and migration 005 upgrading a loaded single table.
///
/// Needs DATABASE_URL; `make bench` starts a durable PostgreSQL and runs it. The writes go to
/// --csv, the sizes, retention and upgrade beside it (-retention.csv).
#[derive(Parser)]
struct Options {
    /// Runs of each batch size: the ratio is the median of the runs' ratios
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        default_value_if("quick", "true", "3")
    )]
    runs: usize,
    /// Records loaded a pass (sent today, ~1% invalid, ~0.5% redelivered)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        default_value_if("quick", "true", "20000")
    )]
    rows: usize,
    /// A quick look: 3 runs of 20,000 records (unless --runs or --rows say otherwise)
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    common: args::Common,
}

/// One layout: its database, an admin connection and the function's processor on it.
struct Layout {
    name: &'static str,
    admin: Client,
    processor: Processor,
}

impl Layout {
    async fn new(server_url: &str, name: &'static str, partitioned: bool) -> Layout {
        let url = fresh_database(server_url, &format!("login_etl_bench_{name}")).await;
        let admin = connect(&url).await;
        if partitioned {
            // The table as a deployment keeping 90 days has it: a partition a day, so that
            // what grows with their number (locks taken, plans) is in the figures.
            admin
                .batch_execute(
                    "SELECT login_etl_create_partitions((now() AT TIME ZONE 'UTC')::date - 90,
                                                        (now() AT TIME ZONE 'UTC')::date)",
                )
                .await
                .expect("90 days of partitions");
        } else {
            admin.batch_execute(UNPARTITION).await.expect("unpartition");
        }
        let masker = Masker::new(workload::MASKING_KEY.as_bytes()).unwrap();
        let config = DatabaseConfig::from_url(&url).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let store = Store::connect(config, StoreOptions::default(), deadline)
            .await
            .expect("the function connects to the benchmark database");
        Layout {
            name,
            admin,
            processor: Processor::new(masker, store),
        }
    }

    /// Loads the workload in batches of `batch_size`; returns records per second.
    async fn load(
        &self,
        records: &[aws_lambda_events::event::sqs::SqsMessage],
        batch_size: usize,
    ) -> f64 {
        self.admin
            .batch_execute("TRUNCATE user_logins; CHECKPOINT")
            .await
            .unwrap();
        let started = Instant::now();
        for batch in records.chunks(batch_size) {
            let deadline = Instant::now() + Duration::from_secs(30);
            let outcome = self.processor.process(batch, deadline).await.unwrap();
            assert!(
                outcome.failures.len() <= batch.len() / 20,
                "{}: only the workload's invalid records may fail",
                self.name
            );
        }
        records.len() as f64 / started.elapsed().as_secs_f64()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        self.admin.query_one(sql, &[]).await.unwrap().get(0)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options: Options = args::parse();
    let server_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL: run `make bench`, or point it at a throw-away server");
    let partitioned = Layout::new(&server_url, "partitioned", true).await;
    let flat = Layout::new(&server_url, "unpartitioned", false).await;
    let records = workload::records(15, options.rows);
    println!(
        "partitioned against unpartitioned user_logins: {} records a pass, {} runs, the real handler",
        options.rows, options.runs
    );
    println!("batch | partitioned rec/s | unpartitioned rec/s | ratio (median of runs)");
    let mut csv = String::from(
        "batch_size,partitioned_records_per_s,unpartitioned_records_per_s,ratio,runs,records\n",
    );
    for batch_size in BATCH_SIZES {
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..options.runs {
            // Alternate which layout goes first, so a drift of the machine hits both alike.
            let (a, b) = if run % 2 == 0 {
                (&partitioned, &flat)
            } else {
                (&flat, &partitioned)
            };
            let first = a.load(&records, batch_size).await;
            let second = b.load(&records, batch_size).await;
            let (p, f) = if run % 2 == 0 {
                (first, second)
            } else {
                (second, first)
            };
            ours.push(p);
            theirs.push(f);
            ratios.push(p / f);
        }
        let (ours, theirs, ratio) = (median(ours), median(theirs), median(ratios));
        println!("{batch_size:>5} | {ours:>17.0} | {theirs:>19.0} | {ratio:.2}");
        writeln!(
            csv,
            "{batch_size},{ours:.0},{theirs:.0},{ratio:.2},{},{}",
            options.runs, options.rows
        )
        .unwrap();
    }
    args::write_csv(&options.common.csv, &csv);

    // Sizes after the last load: the day's partition against the whole single table.
    let rows = partitioned.scalar("SELECT count(*) FROM user_logins").await;
    let partition_index = partitioned
        .scalar(
            "SELECT pg_relation_size(i.indexrelid) FROM pg_index i
             WHERE i.indrelid = login_etl_partition_name((now() AT TIME ZONE 'UTC')::date)::regclass",
        )
        .await;
    let partition_heap = partitioned
        .scalar("SELECT pg_relation_size(login_etl_partition_name((now() AT TIME ZONE 'UTC')::date)::regclass)")
        .await;
    let flat_index = flat
        .scalar("SELECT pg_relation_size('user_logins_flat_key')")
        .await;
    let mib = |bytes: i64| bytes as f64 / 1048576.0;
    println!(
        "\n{rows} rows of one day: the day's partition {:.1} MiB of rows, its unique index {:.1} MiB ({:.0} bytes a row); the single table's index {:.1} MiB",
        mib(partition_heap),
        mib(partition_index),
        partition_index as f64 / rows as f64,
        mib(flat_index)
    );
    // Sizes, retention and the upgrade, one figure a line.
    let mut figures = String::from("measure,value,unit\n");
    let mut figure = |what: &str, value: String, unit: &str| {
        writeln!(figures, "{},{value},{unit}", args::field(what)).unwrap();
    };
    figure("rows of one day", rows.to_string(), "rows");
    figure(
        "the day's partition: rows",
        format!("{:.1}", mib(partition_heap)),
        "MiB",
    );
    figure(
        "the day's partition: unique index",
        format!("{:.1}", mib(partition_index)),
        "MiB",
    );
    figure(
        "the day's partition: unique index a row",
        format!("{:.0}", partition_index as f64 / rows as f64),
        "bytes",
    );
    figure(
        "the single table: unique index",
        format!("{:.1}", mib(flat_index)),
        "MiB",
    );

    // Retention: ending the day's rows. The 90 empty older days go first, untimed, so the timed
    // call drops one partition, as the daily job does.
    partitioned
        .admin
        .query(
            "SELECT login_etl_drop_before((now() AT TIME ZONE 'UTC')::date)",
            &[],
        )
        .await
        .unwrap();
    let started = Instant::now();
    partitioned
        .admin
        .query(
            "SELECT login_etl_drop_before((now() AT TIME ZONE 'UTC')::date + 1)",
            &[],
        )
        .await
        .unwrap();
    let dropped = started.elapsed();
    let started = Instant::now();
    flat.admin
        .batch_execute(
            "DELETE FROM user_logins WHERE create_date = (now() AT TIME ZONE 'UTC')::date",
        )
        .await
        .unwrap();
    let deleted = started.elapsed();
    flat.admin
        .batch_execute("VACUUM user_logins")
        .await
        .unwrap();
    let vacuumed = started.elapsed();
    let ms = |elapsed: Duration| elapsed.as_secs_f64() * 1e3;
    let slower = vacuumed.as_secs_f64() / dropped.as_secs_f64();
    println!(
        "ending the day's {rows} rows: drop the partition {:.1} ms; DELETE {:.1} ms, with the VACUUM {:.1} ms ({slower:.0}x the drop)",
        ms(dropped),
        ms(deleted),
        ms(vacuumed),
    );
    figure(
        "ending the day: drop its partition",
        format!("{:.1}", ms(dropped)),
        "ms",
    );
    figure(
        "ending the day: DELETE its rows",
        format!("{:.1}", ms(deleted)),
        "ms",
    );
    figure(
        "ending the day: DELETE, then the VACUUM that gives the space back",
        format!("{:.1}", ms(vacuumed)),
        "ms",
    );
    figure(
        "ending the day: DELETE and VACUUM against the drop",
        format!("{slower:.0}"),
        "x",
    );

    // The upgrade of a table with rows: migration 005 on the single table, loaded once more.
    flat.load(&records, 1_000).await;
    let rows = flat.scalar("SELECT count(*) FROM user_logins").await;
    let started = Instant::now();
    flat.admin
        .batch_execute(MIGRATIONS[4])
        .await
        .expect("migration 005 upgrades the single table");
    let upgrade = started.elapsed().as_secs_f64();
    let partitions = flat
        .scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'user_logins'::regclass")
        .await;
    println!(
        "upgrading a single table of {rows} rows to partitions (migration 005): {:.0} ms, {:.0} rows/s ({partitions} partitions)",
        upgrade * 1e3,
        rows as f64 / upgrade
    );
    figure(
        "migration 005 on a single table: rows",
        rows.to_string(),
        "rows",
    );
    figure(
        "migration 005 on a single table: time",
        format!("{:.0}", upgrade * 1e3),
        "ms",
    );
    figure(
        "migration 005 on a single table: rows copied",
        format!("{:.0}", rows as f64 / upgrade),
        "rows/s",
    );
    figure(
        "migration 005 on a single table: partitions made",
        partitions.to_string(),
        "partitions",
    );
    args::write_csv(&options.common.csv_beside("retention"), &figures);
}
