//! OTLP/gRPC: the logs and trace services, gzip accepted, messages bounded in size.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{Intake, IntakeError};

#[derive(Clone)]
pub struct Grpc {
    intake: Arc<Intake>,
}

/// The two services, ready for `tonic::transport::Server::add_service`.
pub fn services(intake: Arc<Intake>) -> (LogsServiceServer<Grpc>, TraceServiceServer<Grpc>) {
    let limit = usize::try_from(intake.max_request_size).unwrap_or(usize::MAX);
    let grpc = Grpc { intake };
    (
        LogsServiceServer::new(grpc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit),
        TraceServiceServer::new(grpc)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit),
    )
}

impl Grpc {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), IntakeError> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.intake.authorize(header)
    }

    fn status(&self, signal: &str, error: IntakeError) -> Status {
        self.intake.refused(signal, &error);
        let message = error.to_string();
        match error {
            IntakeError::Unauthenticated => Status::unauthenticated(message),
            IntakeError::Invalid(_) => Status::invalid_argument(message),
            IntakeError::TooLarge(_) | IntakeError::Full => Status::resource_exhausted(message),
            IntakeError::Unavailable(_) => Status::unavailable(message),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.authorize(&request)
            .map_err(|e| self.status("logs", e))?;
        let partial = self
            .intake
            .logs(request.into_inner())
            .await
            .map_err(|e| self.status("logs", e))?;
        Ok(Response::new(partial.logs_response()))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.authorize(&request)
            .map_err(|e| self.status("traces", e))?;
        let partial = self
            .intake
            .traces(request.into_inner())
            .await
            .map_err(|e| self.status("traces", e))?;
        Ok(Response::new(partial.traces_response()))
    }
}
