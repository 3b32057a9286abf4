//! `logbook serve`: the HTTP server (health, readiness, metrics) and the background jobs,
//! with an ordered shutdown on SIGINT/SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::logging::LevelHandle;
use crate::schema::{LogKind, ServerLog};
use crate::store;

/// What `/readyz` reports on.
pub struct Health {
    clickhouse_ok_at: Mutex<Option<Instant>>,
    unreachable_threshold: Duration,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(unreachable_threshold: Duration) -> Health {
        Health {
            clickhouse_ok_at: Mutex::new(None),
            unreachable_threshold,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Reasons not to send traffic here; empty when ready.
    pub async fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::Relaxed) {
            reasons.push("shutting down".to_owned());
        }
        match *self.clickhouse_ok_at.lock().await {
            None => reasons.push("clickhouse has not been reached yet".to_owned()),
            Some(at) if at.elapsed() > self.unreachable_threshold => reasons.push(format!(
                "clickhouse unreachable for {}s",
                at.elapsed().as_secs()
            )),
            Some(_) => {}
        }
        reasons
    }
}

/// logbook's own metrics, exposed on `/metrics`.
pub struct Metrics {
    pub registry: Registry,
    pub clickhouse_up: IntGauge,
    pub retention_partitions_dropped: IntCounter,
    pub retention_bytes_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let clickhouse_up = IntGauge::new(
            "logbook_clickhouse_up",
            "1 when the last ClickHouse probe succeeded",
        )
        .expect("valid metric");
        let retention_partitions_dropped = IntCounter::new(
            "logbook_retention_partitions_dropped_total",
            "server_logs partitions dropped by the size cap",
        )
        .expect("valid metric");
        let retention_bytes_dropped = IntCounter::new(
            "logbook_retention_dropped_bytes_total",
            "bytes on disk freed by the server_logs size cap",
        )
        .expect("valid metric");
        for metric in [
            Box::new(clickhouse_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(retention_partitions_dropped.clone()),
            Box::new(retention_bytes_dropped.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Metrics {
            registry,
            clickhouse_up,
            retention_partitions_dropped,
            retention_bytes_dropped,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub log_level: Option<LevelHandle>,
}

/// The HTTP routes. Health checks and metrics need no authentication; the API (a later
/// issue) mounts beside them behind its token check.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let reasons = state.health.not_ready_reasons().await;
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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&state.metrics.registry.gather(), &mut buffer) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            buffer,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            e.to_string().into_bytes(),
        ),
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config, log_level: LevelHandle) -> anyhow::Result<()> {
    let state = AppState {
        health: Arc::new(Health::new(config.server.unreachable_threshold)),
        metrics: Arc::new(Metrics::new()),
        log_level: Some(log_level),
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    tracing::info!(address = %config.server.listen, clickhouse = %config.clickhouse.url, "logbook serving");

    let stop = CancellationToken::new();
    let client = store::client(&config.clickhouse);
    let jobs = [
        tokio::spawn(probe_clickhouse(
            client.clone(),
            config.clone(),
            state.clone(),
            stop.clone(),
        )),
        tokio::spawn(enforce_size_cap(
            client,
            config.clone(),
            state.clone(),
            stop.clone(),
        )),
    ];

    let shutdown = {
        let state = state.clone();
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            state.health.shutting_down.store(true, Ordering::Relaxed);
            stop.cancel();
        }
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    let deadline = config.server.shutdown_timeout;
    for job in jobs {
        if tokio::time::timeout(deadline, job).await.is_err() {
            tracing::warn!(?deadline, "a background job did not stop in time");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn probe_clickhouse(
    client: clickhouse::Client,
    config: Config,
    state: AppState,
    stop: CancellationToken,
) {
    let mut was_up = None;
    loop {
        let result = store::ping(&client, config.clickhouse.request_timeout).await;
        let up = result.is_ok();
        if up {
            *state.health.clickhouse_ok_at.lock().await = Some(Instant::now());
        }
        state.metrics.clickhouse_up.set(i64::from(up));
        if was_up != Some(up) {
            match result {
                Ok(()) => tracing::info!("clickhouse reachable"),
                Err(error) => tracing::warn!(%error, "clickhouse unreachable"),
            }
            was_up = Some(up);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.server.readiness_probe_interval) => {}
        }
    }
}

async fn enforce_size_cap(
    client: clickhouse::Client,
    config: Config,
    state: AppState,
    stop: CancellationToken,
) {
    let retention = &config.retention;
    loop {
        let pass = store::size_cap::enforce(
            &client,
            &config.clickhouse.database,
            ServerLog::TABLE.name,
            retention.server_logs_max_bytes,
            config.clickhouse.request_timeout,
        )
        .await;
        match pass {
            Ok(report) => {
                for (_, bytes) in &report.dropped {
                    state.metrics.retention_partitions_dropped.inc();
                    state.metrics.retention_bytes_dropped.inc_by(*bytes);
                }
            }
            Err(error) => tracing::warn!(%error, "server_logs size check failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retention.size_check_interval) => {}
        }
    }
}
