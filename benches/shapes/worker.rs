//! The store's two ways of writing a large batch, in a process of their own under the CPU cap:
//! `Processor::process` (planning streamed into the COPY) against `plan_batch` then
//! `Store::write` (the whole plan first, then the same COPY). The release binary always
//! streams, so this comparison runs the library in-process instead: the shapes benchmark starts
//! its own executable with `--worker` in the cgroup and reads one line per batch.

use std::time::Duration;

use login_etl::batch::plan_batch;
use login_etl::config::DatabaseConfig;
use login_etl::handler::Processor;
use login_etl::mask::Masker;
use login_etl::store::{Store, StoreOptions};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::{database, workload};

pub const STREAMED: &str = "streamed";
pub const PLANNED: &str = "planned";

/// `--worker URL SIZE BATCHES`: both ways over the same batches, twice each in alternating
/// order, the table truncated before each pass; prints `way milliseconds` per batch.
pub async fn run(args: &[String]) {
    let [url, size, batches] = args else {
        panic!("--worker takes URL SIZE BATCHES");
    };
    let size: usize = size.parse().expect("SIZE");
    let batches: usize = batches.parse().expect("BATCHES");
    let records = workload::records(size as u64, size * batches);
    let masker = Masker::new(workload::MASKING_KEY.as_bytes()).expect("masker");
    let config = DatabaseConfig::from_url(url).expect("URL");
    let store = Store::connect(
        config,
        StoreOptions::default(),
        Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("connect");
    let processor = Processor::new(masker.clone(), store);
    // A store of its own for the planned way, so each keeps its connection warm.
    let planned_store = Store::connect(
        DatabaseConfig::from_url(url).expect("URL"),
        StoreOptions::default(),
        Instant::now() + Duration::from_secs(30),
    )
    .await
    .expect("connect");
    let admin = database::connect(url).await;
    for round in 0..4 {
        admin
            .batch_execute("TRUNCATE user_logins")
            .await
            .expect("truncate");
        let streamed = round % 2 == 0;
        for batch in records.chunks(size) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let started = Instant::now();
            if streamed {
                processor.process(batch, deadline).await.expect("process");
            } else {
                let today = OffsetDateTime::now_utc().date();
                let plan = plan_batch(batch, &masker, today).expect("plan");
                planned_store
                    .write(&plan.rows, &plan.key_ids, deadline, plan.fifo)
                    .await
                    .expect("write");
            }
            let ms = started.elapsed().as_secs_f64() * 1e3;
            println!("{} {ms:.4}", if streamed { STREAMED } else { PLANNED });
        }
    }
}
