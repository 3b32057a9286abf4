//! `logbook demo`: simulated backend services emitting a realistic, seeded mix of every log
//! kind through [`crate::telemetry`] over OTLP, with the spans instrumented services would make
//! (`spans.rs`), live at a given rate and optionally with history (`--backfill DAYS`) so
//! retention and 30-day views have data.

mod scenario;
mod spans;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub use scenario::{DEGRADED, DISABLED, INTEGRATIONS, SECRET_MARK, Simulator};
use spans::Spans;

use crate::schema::{LogKind, OTEL_TRACES, RowVisitor, Ts};
use crate::telemetry::{Protocol, Telemetry, TelemetryConfig};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub endpoint: String,
    pub protocol: Protocol,
    /// Live events per second.
    pub rate: u32,
    /// How long to emit live events; `None`: until Ctrl-C.
    pub duration: Option<Duration>,
    pub tenants: usize,
    pub seed: u64,
    /// Days of history to emit first, with past timestamps.
    pub backfill_days: u32,
    /// Events per simulated hour of history.
    pub backfill_per_hour: u32,
    /// Draw a progress bar (off when stderr is not a terminal).
    pub progress: bool,
}

/// Rows emitted, per table.
pub type Summary = BTreeMap<&'static str, u64>;

struct Emit<'a> {
    telemetry: &'a Telemetry,
    summary: &'a mut Summary,
}

impl RowVisitor for Emit<'_> {
    fn visit<T: LogKind>(&mut self, row: &T) {
        self.telemetry.emit(row);
        *self.summary.entry(T::TABLE.name).or_default() += 1;
    }
}

pub async fn run(options: DemoOptions) -> anyhow::Result<Summary> {
    let telemetry = Telemetry::new(&TelemetryConfig {
        enabled: true,
        endpoint: options.endpoint.clone(),
        protocol: options.protocol,
        service_name: "demo-backend".into(),
        service_version: env!("CARGO_PKG_VERSION").into(),
        environment: "demo".into(),
        ..TelemetryConfig::default()
    })?;
    let mut simulator = Simulator::new(options.seed, options.tenants);
    let spans = Spans::new(telemetry.tracer());
    let mut summary = Summary::new();
    let bar = if options.progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {pos} events ({per_sec}) {msg}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let now = Ts::now();
    let hours = u64::from(options.backfill_days) * 24;
    if hours > 0 {
        bar.set_message(format!("backfilling {} days", options.backfill_days));
    }
    for hour in (1..=hours).rev() {
        for i in 0..options.backfill_per_hour {
            let offset =
                i64::from(i) * 3_600_000_000_000 / i64::from(options.backfill_per_hour.max(1));
            let time = Ts(now.0 - hour as i64 * 3_600_000_000_000 + offset);
            emit_all(&telemetry, &spans, &mut simulator, time, &mut summary);
            bar.inc(1);
        }
        // Let the batch exporter keep up instead of dropping what overflows its queue.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    bar.set_message("live");
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                emit_all(&telemetry, &spans, &mut simulator, Ts::now(), &mut summary);
                bar.inc(1);
            }
        }
    }
    bar.finish_with_message("flushing");
    telemetry.shutdown().await?;
    Ok(summary)
}

fn emit_all(
    telemetry: &Telemetry,
    spans: &Spans,
    simulator: &mut Simulator,
    time: Ts,
    summary: &mut Summary,
) {
    let mut rows = simulator.next(time);
    *summary.entry(OTEL_TRACES.name).or_default() += spans.trace(&mut rows);
    let mut emit = Emit { telemetry, summary };
    for row in &rows {
        row.visit(&mut emit);
    }
}
