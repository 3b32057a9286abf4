//! logbook's HTTP server on `server.listen`: health checks and metrics, open to all; the
//! authenticated API mounts beside them.

mod health;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use health::Readiness;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
}

/// The HTTP routes. Health checks and metrics need no authentication.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
