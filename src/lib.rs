//! logbook: receives OpenTelemetry logs and traces from backend services and stores them in
//! ClickHouse, one typed table per kind of log, with retention, alerts and dashboards.
//!
//! The folders read as the architecture:
//! - [`schema`]: the model. The log kinds (shared with services through the
//!   `logbook-events` crate), the OpenTelemetry tables, the DDL, the insert format and the
//!   data dictionary, all derived from one definition per table.
//! - [`ingest`]: receive → redact → durable queue → decode → route → batch → sink, in the
//!   order data flows.
//! - [`store`]: ClickHouse administration: the client, migrations, the reachability probe,
//!   retention.
//! - [`api`]: the HTTP server (health, readiness, metrics).
//! - [`query`]: reads ClickHouse for the API and for metrics computed from stored rows
//!   (integration health).
//! - Around them: [`config`], [`logging`] (logbook's own logs), [`metrics`], [`telemetry`]
//!   (the emitting side, from `logbook-events`), [`demo`] (a simulated backend) and
//!   [`serve`], which only wires the parts together.

pub mod api;
pub mod config;
pub mod demo;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod query;
pub mod schema;
pub mod serve;
pub mod store;

/// The emitting side lives in the crate services depend on; logbook emits its own telemetry
/// with it too.
pub use logbook_events::{for_each_kind, telemetry};
