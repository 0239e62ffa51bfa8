//! The pure core on one core: parse + validate + mask, in records per second.
//!
//! `cargo bench --bench core` (or `make bench`, which also runs the ingest benchmark). The
//! defaults keep the whole run to well under a minute; pass criterion options after `--` for
//! longer runs, e.g. `cargo bench --bench core -- --measurement-time 10`.

mod workload;

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use login_etl::event::Decoded;
use login_etl_core::batch::plan_batch;
use login_etl_core::login::LoginEvent;
use login_etl_core::mask::Masker;
use login_etl_core::record::LeanSqsEvent;
use time::macros::date;

/// Records per benchmark iteration: a large SQS batch (Lambda allows up to 10,000).
const RECORDS: usize = 1_000;

fn core(c: &mut Criterion) {
    let records = workload::records(42, RECORDS);
    let masker = Masker::new(workload::MASKING_KEY.as_bytes()).unwrap();
    let bodies: Vec<&str> = records.iter().filter_map(|r| r.body.as_deref()).collect();
    let valid: Vec<(IpAddr, String)> = bodies
        .iter()
        .filter_map(|body| LoginEvent::parse(body).ok())
        .map(|event| (event.ip, event.device_id.into_owned()))
        .collect();

    let mut group = c.benchmark_group("core");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    // What the Lambda runtime does before the handler: the event's JSON into the records, as
    // aws_lambda_events' SqsEvent (every field) and as the function's LeanSqsEvent (what the
    // planner reads); the ratio of the two is the saving.
    let event = serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap();
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("deserialize the event: SqsEvent (every field)", |b| {
        b.iter(|| serde_json::from_slice::<SqsEvent>(black_box(&event)).unwrap())
    });
    group.bench_function(
        "deserialize the event: LeanSqsEvent (what the planner reads)",
        |b| b.iter(|| serde_json::from_slice::<LeanSqsEvent>(black_box(&event)).unwrap()),
    );
    // How lambda_runtime reads a payload: through serde_path_to_error, its
    // `deserializer::deserialize`. As the payload type, LeanSqsEvent itself, or the function's
    // `Decoded` (src/event.rs: raw JSON through the tracking, then read plainly).
    let as_the_runtime_reads =
        |b: &mut criterion::Bencher, read: fn(&[u8])| b.iter(|| read(black_box(&event)));
    group.bench_function(
        "deserialize the event: LeanSqsEvent as lambda_runtime reads it (path tracked)",
        |b| {
            as_the_runtime_reads(b, |json| {
                let reader = &mut serde_json::Deserializer::from_slice(json);
                serde_path_to_error::deserialize::<_, LeanSqsEvent>(reader).unwrap();
            })
        },
    );
    group.bench_function(
        "deserialize the event: Decoded<LeanSqsEvent> as lambda_runtime reads it (the function's)",
        |b| {
            as_the_runtime_reads(b, |json| {
                let reader = &mut serde_json::Deserializer::from_slice(json);
                serde_path_to_error::deserialize::<_, Decoded<LeanSqsEvent>>(reader).unwrap();
            })
        },
    );

    group.bench_function(
        "plan_batch (parse + validate + mask, 1000-record batch)",
        |b| b.iter(|| plan_batch(black_box(&records), &masker, date!(2026 - 11 - 25)).unwrap()),
    );

    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function("LoginEvent::parse (parse + validate)", |b| {
        b.iter(|| {
            bodies
                .iter()
                .filter(|body| LoginEvent::parse(black_box(body)).is_ok())
                .count()
        })
    });

    group.throughput(Throughput::Elements(valid.len() as u64));
    group.bench_function("Masker (mask_ip + mask_device_id)", |b| {
        b.iter(|| {
            for (ip, device_id) in &valid {
                black_box(masker.mask_ip(black_box(*ip)));
                black_box(masker.mask_device_id(black_box(device_id)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
