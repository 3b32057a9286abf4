//! docs/instrumenting.md's Rust example: a failed API call as a typed event, inside a span.
//! `LOGBOOK_OTLP=http://localhost:4317 cargo run -p logbook-events --example instrumenting`

use logbook_events::schema::ApiCall;
use logbook_events::telemetry::{Telemetry, TelemetryConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = Telemetry::new(&TelemetryConfig {
        endpoint: std::env::var("LOGBOOK_OTLP").unwrap_or("http://localhost:4317".into()),
        service_name: "invoicing".into(),
        environment: "prod".into(),
        ..TelemetryConfig::default()
    })?;
    tracing_subscriber::registry()
        .with(telemetry.layers())
        .init();

    let span = tracing::info_span!("send invoice");
    let entered = span.enter();
    // The row's struct is the table's: columns left out keep their defaults. `emit` writes
    // the attributes, a one-line body, the severity of the outcome and the span's ids.
    telemetry.emit(&ApiCall {
        tenant: "acme".into(),
        bot: "invoice-bot".into(),
        method: "POST".into(),
        url: "https://api.example.com/invoices".into(),
        status_code: 502,
        outcome: "error".into(),
        duration_ms: 87,
        ..ApiCall::default()
    });
    drop(entered);
    telemetry.shutdown().await?; // flushes
    Ok(())
}
