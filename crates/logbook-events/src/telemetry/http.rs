//! The OTLP/HTTP client: Hyper, driven by the service's tokio runtime.
//!
//! The SDK's batch processors export from their own threads with a plain executor, where an
//! async client finds no reactor; a blocking client would bring a runtime of its own. So each
//! request is spawned onto the runtime `Telemetry::new` ran in, and the thread awaits it.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;

#[derive(Debug, Clone)]
pub(super) struct RuntimeClient {
    client: Arc<dyn HttpClient>,
    runtime: Handle,
}

impl RuntimeClient {
    pub(super) fn new(runtime: Handle, timeout: Duration) -> RuntimeClient {
        RuntimeClient {
            client: Arc::new(HyperClient::with_default_connector(timeout, None)),
            runtime,
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = Arc::clone(&self.client);
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
