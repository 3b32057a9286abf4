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
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::batch::Limits;
use crate::config::{Config, FsyncMode};
use crate::logging::LevelHandle;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::{FsyncPolicy, Queue, QueueOptions};
use crate::receive::{Intake, grpc, http};
use crate::redact::Redactor;
use crate::schema::{LogKind, ServerLog};
use crate::sink::{Backoff, DeadLetter, Sink};
use crate::store;

/// What `/readyz` reports on.
pub struct Health {
    clickhouse_ok_at: Mutex<Option<Instant>>,
    unreachable_threshold: Duration,
    shutting_down: AtomicBool,
    /// The durable queue and its bound, once ingest runs.
    queue: Option<(Queue, u64)>,
}

/// Readiness turns false when the queue is this full: senders would soon get 429s.
const QUEUE_NOT_READY_FRACTION: f64 = 0.9;

impl Health {
    pub fn new(unreachable_threshold: Duration, queue: Option<(Queue, u64)>) -> Health {
        Health {
            clickhouse_ok_at: Mutex::new(None),
            unreachable_threshold,
            shutting_down: AtomicBool::new(false),
            queue,
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
        if let Some((queue, max_bytes)) = &self.queue {
            let queued = queue.stats().bytes;
            if queued as f64 >= *max_bytes as f64 * QUEUE_NOT_READY_FRACTION {
                reasons.push(format!(
                    "durable queue nearly full ({queued} of {max_bytes} bytes)"
                ));
            }
        }
        reasons
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

/// Runs until SIGINT or SIGTERM. Shutdown is ordered: readiness turns false, receivers
/// finish their in-flight requests, the pipeline flushes its last batch, then jobs stop.
pub async fn run(config: Config, log_level: LevelHandle) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::open(queue_options(&config)).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the durable queue in {}: {e}",
            config.queue.path.display()
        )
    })?;
    let redactor = Redactor::new(&config.redaction)?;
    let intake = Arc::new(Intake::new(
        queue.clone(),
        redactor,
        &config.ingest.tokens,
        metrics.clone(),
        config.ingest.max_request_size.as_u64(),
        config.queue.max_bytes.as_u64(),
    ));
    let state = AppState {
        health: Arc::new(Health::new(
            config.server.unreachable_threshold,
            Some((queue.clone(), config.queue.max_bytes.as_u64())),
        )),
        metrics: metrics.clone(),
        log_level: Some(log_level),
    };
    let bind = |address: std::net::SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address} ({what}): {e}"))
    };
    let api_listener = bind(config.server.listen, "server.listen").await?;
    let otlp_http_listener = bind(config.ingest.http_listen, "ingest.http_listen").await?;
    let otlp_grpc_listener = bind(config.ingest.grpc_listen, "ingest.grpc_listen").await?;
    tracing::info!(
        api = %config.server.listen,
        otlp_grpc = %config.ingest.grpc_listen,
        otlp_http = %config.ingest.http_listen,
        clickhouse = %config.clickhouse.url,
        queue = %config.queue.path.display(),
        "logbook serving"
    );

    let client = store::client(&config.clickhouse);
    let stop_receivers = CancellationToken::new();
    let stop_pipeline = CancellationToken::new();
    let stop_jobs = CancellationToken::new();
    let sink = Sink::new(
        client.clone(),
        Backoff {
            initial: config.sink.retry_initial_backoff,
            max: config.sink.retry_max_backoff,
        },
        config.clickhouse.request_timeout,
        DeadLetter::new(&config.queue.path.join("dead-letter")),
        metrics.clone(),
    );
    let limits = Limits {
        max_rows: config.batch.max_rows,
        max_bytes: usize::try_from(config.batch.max_bytes.as_u64()).unwrap_or(usize::MAX),
        max_age: config.batch.max_age,
    };
    let mut pipeline = tokio::spawn(
        Pipeline::new(queue.clone(), sink, limits, metrics.clone()).run(stop_pipeline.clone()),
    );
    let jobs = [
        tokio::spawn(probe_clickhouse(
            client.clone(),
            config.clone(),
            state.clone(),
            stop_jobs.clone(),
        )),
        tokio::spawn(enforce_size_cap(
            client,
            config.clone(),
            state.clone(),
            stop_jobs.clone(),
        )),
    ];

    let (logs_service, traces_service) = grpc::services(intake.clone());
    // Bounds the requests decoded at once, so memory stays bounded however many senders push.
    let in_flight = config.ingest.max_concurrent_requests;
    let grpc_server = tonic::transport::Server::builder()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight))
        .add_service(logs_service)
        .add_service(traces_service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(otlp_grpc_listener),
            stop_receivers.clone().cancelled_owned(),
        );
    let http_router =
        http::router(intake).layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight));
    let http_server = axum::serve(otlp_http_listener, http_router)
        .with_graceful_shutdown(stop_receivers.clone().cancelled_owned());
    let api_server = axum::serve(api_listener, app(state.clone()))
        .with_graceful_shutdown(stop_receivers.clone().cancelled_owned());

    let shutdown = {
        let state = state.clone();
        let stop_receivers = stop_receivers.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            state.health.shutting_down.store(true, Ordering::Relaxed);
            stop_receivers.cancel();
        }
    };
    let servers = async {
        let (grpc, http, api) = tokio::join!(
            grpc_server,
            http_server.into_future(),
            api_server.into_future()
        );
        grpc?;
        http?;
        api?;
        anyhow::Ok(())
    };
    let pipeline_ended = tokio::select! {
        result = servers => { result?; None }
        _ = shutdown => None,
        // The pipeline ends by itself only when it cannot go on.
        ended = &mut pipeline => Some(ended),
    };
    if let Some(ended) = pipeline_ended {
        stop_jobs.cancel();
        let reason = match ended {
            Ok(Ok(())) => "it returned".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("it panicked: {error}"),
        };
        // Requests stop being acknowledged; what was acknowledged is in the queue, which the
        // next start replays.
        anyhow::bail!(
            "the pipeline stopped while serving ({reason}); exiting so that a restart replays the durable queue"
        );
    }
    // Receivers have stopped (or are stopping): let the pipeline store what it holds.
    let deadline = config.server.shutdown_timeout;
    stop_pipeline.cancel();
    match tokio::time::timeout(deadline, pipeline).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::error!(%error, "pipeline failed"),
        Ok(Err(error)) => tracing::error!(%error, "pipeline panicked"),
        Err(_) => tracing::warn!(
            ?deadline,
            "pipeline did not stop in time; the queue keeps its data"
        ),
    }
    stop_jobs.cancel();
    for job in jobs {
        if tokio::time::timeout(deadline, job).await.is_err() {
            tracing::warn!(?deadline, "a background job did not stop in time");
        }
    }
    Ok(())
}

pub fn queue_options(config: &Config) -> QueueOptions {
    let mut options = QueueOptions::new(config.queue.path.clone());
    options.max_bytes = config.queue.max_bytes.as_u64();
    options.segment_bytes = config.queue.segment_size.as_u64();
    options.fsync = match config.queue.fsync {
        FsyncMode::Always => FsyncPolicy::Always,
        FsyncMode::Interval => FsyncPolicy::Interval(config.queue.fsync_interval),
        FsyncMode::Never => FsyncPolicy::Never,
    };
    options
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
