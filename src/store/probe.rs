//! Whether ClickHouse answers: a background probe, feeding `logbook_clickhouse_up` and readiness.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ping;
use crate::metrics::Metrics;

/// The last time ClickHouse answered the probe.
#[derive(Debug)]
pub struct ClickhouseStatus {
    ok_at: Mutex<Option<Instant>>,
    /// Unanswered for longer than this, ClickHouse counts as unreachable.
    unreachable_threshold: Duration,
}

impl ClickhouseStatus {
    pub fn new(unreachable_threshold: Duration) -> ClickhouseStatus {
        ClickhouseStatus {
            ok_at: Mutex::new(None),
            unreachable_threshold,
        }
    }

    fn answered(&self) {
        *self.ok_at.lock().expect("not poisoned") = Some(Instant::now());
    }

    /// Why ClickHouse should keep traffic away, if it should.
    pub fn not_ready_reason(&self) -> Option<String> {
        match *self.ok_at.lock().expect("not poisoned") {
            None => Some("clickhouse has not been reached yet".to_owned()),
            Some(at) if at.elapsed() > self.unreachable_threshold => Some(format!(
                "clickhouse unreachable for {}s",
                at.elapsed().as_secs()
            )),
            Some(_) => None,
        }
    }
}

/// Pings ClickHouse every `interval` until `stop`, logging each change of state once.
pub async fn run(
    client: clickhouse::Client,
    request_timeout: Duration,
    interval: Duration,
    status: &ClickhouseStatus,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let mut was_up = None;
    loop {
        let result = ping(&client, request_timeout).await;
        let up = result.is_ok();
        if up {
            status.answered();
        }
        metrics.clickhouse_up.set(i64::from(up));
        if was_up != Some(up) {
            match result {
                Ok(()) => tracing::info!("clickhouse reachable"),
                Err(error) => tracing::warn!(%error, "clickhouse unreachable"),
            }
            was_up = Some(up);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
