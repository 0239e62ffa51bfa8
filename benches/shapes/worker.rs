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

async fn store(url: &str) -> Store {
    let config = DatabaseConfig::from_url(url).expect("URL");
    let deadline = Instant::now() + Duration::from_secs(30);
    Store::connect(config, StoreOptions::default(), deadline)
        .await
        .expect("connect")
}

/// `--worker STREAMED_URL PLANNED_URL SIZE BATCHES`: each way writes every batch to a database
/// of its own, taking turns batch by batch (the first way alternating), so both see the same
/// table state and the same moments of the machine; prints `way milliseconds` per batch.
pub async fn run(args: &[String]) {
    let [streamed_url, planned_url, size, batches] = args else {
        panic!("--worker takes STREAMED_URL PLANNED_URL SIZE BATCHES");
    };
    let size: usize = size.parse().expect("SIZE");
    let batches: usize = batches.parse().expect("BATCHES");
    let records = workload::records(size as u64, size * batches);
    let masker = Masker::new(workload::MASKING_KEY.as_bytes()).expect("masker");
    let processor = Processor::new(masker.clone(), store(streamed_url).await);
    let planned_store = store(planned_url).await;
    for url in [streamed_url, planned_url] {
        database::connect(url)
            .await
            .batch_execute("TRUNCATE user_logins")
            .await
            .expect("truncate");
    }
    for (i, batch) in records.chunks(size).enumerate() {
        for turn in 0..2 {
            let streamed = (i + turn) % 2 == 0;
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
