//! Prints the OpenMetrics exposition of two pools sharing one registry, after some work: what a
//! scrape of `/metrics` returns. `scripts/test.sh` feeds it to the reference parser
//! (`scripts/check_openmetrics.py`, Python `prometheus_client`).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use spillway::{Pool, PoolMetrics};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    std::panic::set_hook(Box::new(|_| {})); // the planned panic below stays out of the output
    let api = Pool::builder()
        .name("api")
        .max_workers(2)
        .run_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let batch = Pool::builder()
        .name("batch \"nightly\"")
        .queue_capacity(1)
        .max_workers(1)
        .build()
        .unwrap();
    api.submit(async {}).await.unwrap().await.unwrap();
    let _ = api.submit(async { panic!("planned") }).await.unwrap().await;
    let stuck = api.submit(std::future::pending::<()>()).await.unwrap();
    assert_eq!(stuck.await, Err(spillway::JobError::TimedOut));
    let running = batch.try_submit(std::future::pending::<()>()).unwrap();
    tokio::task::yield_now().await;
    let queued = batch.try_submit(async {}).unwrap();
    assert!(batch.try_submit(async {}).is_err(), "shed: queue full");
    drop(queued);

    let metrics = PoolMetrics::new();
    metrics.add(&api);
    metrics.add(&batch);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    print!("{text}");
    drop(running);
    batch.shutdown(Duration::from_secs(1)).await;
}
