//! What a backend service needs to send logbook typed events: the log kinds ([`schema`]:
//! each kind's row struct, the attributes it is sent as, and its table's definition, the same
//! definitions the logbook server builds its tables and router from) and the emitting side
//! ([`telemetry`]: OTLP export of typed events, logs and spans through `opentelemetry-otlp`
//! and `tracing`).
//!
//! It depends on no server part (no axum, tonic server, queue or ClickHouse client), so a
//! service compiles only what it sends with.

pub mod schema;
pub mod telemetry;
