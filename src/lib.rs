//! logbook: receives OpenTelemetry logs and traces from backend services and stores them in
//! ClickHouse, one typed table per kind of log, with retention, alerts and dashboards.
//!
//! Data flows one way: [`receive`] (decode, [`redact`]) → durable [`queue`] → [`decode`] (the
//! queued request read in place) → [`route`] to a log kind, as RowBinary → [`batch`] →
//! [`sink`]; [`pipeline`] drives the part after the queue. Around it: [`config`], [`logging`]
//! (logbook's own logs), [`schema`] (every table, defined once), [`store`] (ClickHouse client,
//! migrations, retention), [`telemetry`] (the emitting side), [`demo`] and [`serve`].

pub mod batch;
pub mod config;
pub mod decode;
pub mod demo;
pub mod envelope;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod receive;
pub mod redact;
pub mod route;
pub mod schema;
pub mod serve;
pub mod sink;
pub mod store;
pub mod telemetry;
