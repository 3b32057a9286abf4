//! A small backend service sending its telemetry to logbook: spans, plain logs and typed
//! events of an integration sync run.
//!
//! `cargo run --example service -- --endpoint http://127.0.0.1:4317 [--protocol http]`

use clap::Parser;
use logbook_events::schema::{
    ApiCall, IntegrationSyncRun, MailMessage, MonitoringEvent, RowId, Ts,
};
use logbook_events::telemetry::{Protocol, Telemetry, TelemetryConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
struct Args {
    /// OTLP endpoint: gRPC URL, or HTTP base URL with `--protocol http`.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: ProtocolArg,
    /// Tenant written on every typed row, so a run's rows can be found again.
    #[arg(long, default_value = "acme")]
    tenant: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Grpc,
    Http,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = TelemetryConfig {
        enabled: true,
        endpoint: args.endpoint.clone(),
        protocol: match args.protocol {
            ProtocolArg::Grpc => Protocol::Grpc,
            ProtocolArg::Http => Protocol::Http,
        },
        service_name: "example-integrator".into(),
        service_version: "1.2.3".into(),
        environment: "dev".into(),
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::new(&config)?;
    tracing_subscriber::registry()
        .with(telemetry.layers())
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .init();

    let tenant = args.tenant;
    let run_id = RowId(uuid::Uuid::now_v7());
    let started_at = Ts::now();
    {
        let span = tracing::info_span!("integration_sync", integration = "xero", %tenant);
        let _entered = span.enter();
        tracing::info!(integration = "xero", "sync started");
        let run = |status: &str| IntegrationSyncRun {
            id: RowId(uuid::Uuid::now_v7()),
            tenant: tenant.clone(),
            integration: "xero".into(),
            entity: "invoices".into(),
            status: status.into(),
            started_at,
            ..Default::default()
        };
        for status in ["created", "pending", "running"] {
            telemetry.emit(&run(status));
            println!("sent integration_sync_runs status={status}");
        }
        // The entity's part of the run, and the outbound request inside it: an HTTP client
        // span with the OpenTelemetry HTTP semantic conventions' attributes.
        let entity = tracing::info_span!("sync invoices", logbook.integration.entity = "invoices");
        let _entity = entity.enter();
        let request = tracing::info_span!(
            "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = "https://api.xero.com/oauth/token",
            server.address = "api.xero.com",
            server.port = 443,
            http.response.status_code = 200,
        );
        let call = ApiCall {
            id: RowId(uuid::Uuid::now_v7()),
            tenant: tenant.clone(),
            bot: "xero-sync".into(),
            application: "Xero".into(),
            method: "POST".into(),
            url: "https://api.xero.com/oauth/token".into(),
            status_code: 200,
            outcome: "success".into(),
            duration_ms: 87,
            request_body: r#"{"username":"sync@acme.example","password":"hunter2-secret"}"#.into(),
            response_body: r#"{"token_type":"Bearer"}"#.into(),
            ..Default::default()
        };
        request.in_scope(|| telemetry.emit(&call));
        println!("sent api_calls id={}", call.id.0);
        let mail = MailMessage {
            id: RowId(uuid::Uuid::now_v7()),
            tenant: tenant.clone(),
            direction: "outbound".into(),
            mailbox: "billing@acme.example".into(),
            to: "customer@example.com".into(),
            subject: "Invoices synced".into(),
            status: "sent".into(),
            attempt: 1,
            ..Default::default()
        };
        telemetry.emit(&mail);
        println!("sent mail_messages id={}", mail.id.0);
        let event = MonitoringEvent {
            id: RowId(uuid::Uuid::now_v7()),
            tenant: tenant.clone(),
            severity: "warning".into(),
            message: "xero rate limit at 90%".into(),
            log_type: "integration".into(),
            related_log_id: run_id.0.to_string(),
            ..Default::default()
        };
        telemetry.emit(&event);
        println!("sent monitoring_events id={}", event.id.0);
        telemetry.emit(&IntegrationSyncRun {
            found: 42,
            created: 40,
            updated: 2,
            ended_at: Ts::now(),
            ..run("completed")
        });
        println!("sent integration_sync_runs status=completed");
        tracing::info!(records = 42, "sync finished");
    }
    tracing::info!("shutting down");
    telemetry.shutdown().await?;
    println!("flushed to {} ({:?})", config.endpoint, config.protocol);
    Ok(())
}
