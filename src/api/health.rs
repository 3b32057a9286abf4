//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use crate::ingest::queue::Queue;
use crate::metrics::Metrics;
use crate::store::probe::ClickhouseStatus;

/// What `/readyz` reports on: each part says for itself why it is not ready.
pub struct Readiness {
    shutting_down: AtomicBool,
    clickhouse: Arc<ClickhouseStatus>,
    /// The durable queue and its bound, once ingest runs.
    queue: Option<(Queue, u64)>,
}

impl Readiness {
    pub fn new(clickhouse: Arc<ClickhouseStatus>, queue: Option<(Queue, u64)>) -> Readiness {
        Readiness {
            shutting_down: AtomicBool::new(false),
            clickhouse,
            queue,
        }
    }

    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Reasons not to send traffic here; empty when ready.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let shutting_down = self
            .shutting_down
            .load(Ordering::Relaxed)
            .then(|| "shutting down".to_owned());
        let queue = self
            .queue
            .as_ref()
            .and_then(|(queue, max_bytes)| queue.not_ready_reason(*max_bytes));
        [shutting_down, self.clickhouse.not_ready_reason(), queue]
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Readiness {
    /// Sets the gauges that describe the present (readiness, the queue) at scrape time, so
    /// they are true whatever the pipeline is doing (it may be blocked on ClickHouse).
    pub fn observe(&self, metrics: &Metrics) {
        metrics
            .ready
            .set(i64::from(self.not_ready_reasons().is_empty()));
        if let Some((queue, max_bytes)) = &self.queue {
            let stats = queue.stats();
            metrics.queue_max_bytes.set(*max_bytes as i64);
            metrics.queue_bytes.set(stats.bytes as i64);
            metrics.queue_records.set(stats.records as i64);
            metrics.queue_oldest_age_seconds.set(
                stats
                    .oldest_unacked_age
                    .map_or(0, |age| age.as_secs() as i64),
            );
        }
    }
}

pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let reasons = state.readiness.not_ready_reasons();
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": reasons.is_empty(), "reasons": reasons})),
    )
}

pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.readiness.observe(&state.metrics);
    if let Some(gauge) = &state.min_severity {
        gauge.observe();
    }
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}
