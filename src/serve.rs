//! `logbook serve`: wires ingest, the HTTP server and the background jobs together, with an
//! ordered shutdown on SIGINT/SIGTERM. What each part does lives with that part.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Readiness};

use crate::config::{Config, FsyncMode};
use crate::ingest::batch::Limits;
use crate::ingest::pipeline::Pipeline;
use crate::ingest::queue::{FsyncPolicy, Queue, QueueOptions};
use crate::ingest::receive::Intake;
use crate::ingest::redact::Redactor;
use crate::ingest::sink::{Backoff, Codec, DeadLetter, Sink};
use crate::logging::LevelHandle;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::notify::clock::SystemClock;
use crate::notify::metrics::NotifyMetrics;
use crate::notify::settings::SeverityGauge;
use crate::query;
use crate::settings::SettingsStore;
use crate::store::{self, migrate::Migrator, probe::ClickhouseStatus};

/// Runs until SIGINT or SIGTERM. Shutdown is ordered: readiness turns false, receivers
/// finish their in-flight requests, the pipeline flushes its last batch, then jobs stop.
pub async fn run(config: Config, level: Option<LevelHandle>) -> anyhow::Result<()> {
    // Before anything runs: a signal that arrives while serve starts is a stop, not a kill.
    let shutdown_signal = shutdown_signal()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let metrics = Arc::new(Metrics::with_config(&config.metrics));
    let queue = Queue::open_async(queue_options(&config))
        .await
        .map_err(|e| {
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
    let clickhouse_status = Arc::new(ClickhouseStatus::new(config.server.unreachable_threshold));
    let client = store::client(&config.clickhouse);
    let settings = Arc::new(SettingsStore::new(
        client.clone(),
        config.clickhouse.request_timeout,
    ));
    let state = AppState {
        readiness: Arc::new(Readiness::new(
            clickhouse_status.clone(),
            Some((queue.clone(), config.queue.max_bytes.as_u64())),
        )),
        metrics: metrics.clone(),
        min_severity: Some(Arc::new(SeverityGauge {
            gauge: metrics.notify_min_severity.clone(),
            defaults: config.notify.rules.clone(),
            store: settings.clone(),
        })),
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

    let stop_receivers = CancellationToken::new();
    let stop_pipeline = CancellationToken::new();
    let stop_jobs = CancellationToken::new();
    let sink = Sink::new(
        client.clone(),
        Codec::from(config.clickhouse.compression),
        Backoff {
            initial: config.sink.retry_initial_backoff,
            max: config.sink.retry_max_backoff,
        },
        config.clickhouse.request_timeout,
        DeadLetter::new(&config.queue.path.join("dead-letter")),
        metrics.clone(),
    )
    .wait_for_schema(clickhouse_status.clone());
    let limits = Limits {
        max_rows: config.batch.max_rows,
        max_bytes: usize::try_from(config.batch.max_bytes.as_u64()).unwrap_or(usize::MAX),
        max_age: config.batch.max_age,
        inserts_in_flight: config.batch.inserts_in_flight,
    };
    let mut pipeline = tokio::spawn(
        Pipeline::new(queue.clone(), sink, limits, metrics.clone()).run(stop_pipeline.clone()),
    );
    let mut jobs = vec![
        tokio::spawn({
            let (settings, stop) = (settings.clone(), stop_jobs.clone());
            let interval = config.settings.refresh_interval;
            async move { settings.run(interval, stop).await }
        }),
        tokio::spawn({
            // Not bound to the database, which may not exist yet: readiness says so.
            let client = store::server_client(&config.clickhouse);
            let migrator = Migrator::new(client.clone(), &config);
            let (metrics, stop) = (metrics.clone(), stop_jobs.clone());
            let (timeout, interval) = (
                config.clickhouse.request_timeout,
                config.server.readiness_probe_interval,
            );
            async move {
                store::probe::run(
                    client,
                    migrator,
                    timeout,
                    interval,
                    &clickhouse_status,
                    &metrics,
                    stop,
                )
                .await
            }
        }),
        tokio::spawn({
            let (client, metrics, stop) = (client.clone(), metrics.clone(), stop_jobs.clone());
            let (interval, max) = (
                config.metrics.integration_status_interval,
                config.metrics.max_label_values,
            );
            async move { query::integrations::export(client, &metrics, interval, max, stop).await }
        }),
        tokio::spawn({
            let (client, config, metrics, stop) = (
                client.clone(),
                config.clone(),
                metrics.clone(),
                stop_jobs.clone(),
            );
            async move { store::size_cap::run(client, config, &metrics, stop).await }
        }),
    ];
    if config.notify.active() {
        let notifier = Notifier::new(
            client.clone(),
            config.clickhouse.request_timeout,
            &config.notify,
            settings.clone(),
            Arc::new(SystemClock),
            NotifyMetrics::new(&metrics.registry),
        )?;
        jobs.push(tokio::spawn(notifier.run(stop_jobs.clone())));
    }

    let receivers = crate::ingest::receive::serve(
        intake,
        otlp_grpc_listener,
        otlp_http_listener,
        config.ingest.max_concurrent_requests,
        stop_receivers.clone(),
    );
    let (access_log, access_log_writer) =
        api::AccessLogger::start(client.clone(), config.clickhouse.request_timeout);
    let mut authenticated = api::Api::new(
        client.clone(),
        config.api.clone(),
        access_log,
        &config.clickhouse,
    );
    authenticated.log_file = config.log.file.clone();
    authenticated.level = level;
    authenticated.settings = Some(settings.clone());
    authenticated.app_config = Some(config.clone());
    let authenticated = Arc::new(authenticated);
    let log_level_follower = tokio::spawn(api::follow_log_level(
        authenticated.clone(),
        std::time::Duration::from_millis(500),
        stop_jobs.clone(),
    ));
    let api_server = axum::serve(
        api_listener,
        api::app(state.clone(), authenticated)
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stop_receivers.clone().cancelled_owned());

    let shutdown = {
        let state = state.clone();
        let stop_receivers = stop_receivers.clone();
        async move {
            shutdown_signal.await;
            tracing::info!("shutting down");
            state.readiness.shutting_down();
            stop_receivers.cancel();
        }
    };
    let servers = async {
        let (receivers, api) = tokio::join!(receivers, api_server.into_future());
        receivers?;
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
    let _ = tokio::time::timeout(deadline, log_level_follower).await;
    // The API server is gone with its loggers: the writer stores what it holds and ends.
    if tokio::time::timeout(deadline, access_log_writer)
        .await
        .is_err()
    {
        tracing::warn!(?deadline, "access log writer did not stop in time");
    }
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

/// SIGINT or SIGTERM, handled from this call on (the process's default, dying, until then).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
