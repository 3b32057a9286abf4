//! The OTLP/gRPC `Export` services, decoding as the HTTP receiver does ([`nesting`]): tonic's
//! generated servers decode with prost alone and refuse a whole request for one value nested
//! past prost's recursion limit. Otherwise the same as the generated servers: one unary method,
//! gzip accepted and sent, a bound on the decoded message size.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::Buf;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, EnabledCompressionEncodings, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

use super::nesting::{self, Otlp};

/// One OTLP signal's `Export` method.
pub trait Export: Clone + Send + Sync + 'static {
    type Request: Otlp + Send + 'static;
    type Response: prost::Message + Send + 'static;
    /// The gRPC service name.
    const SERVICE: &'static str;
    /// `/<service>/Export`.
    const PATH: &'static str;

    fn export(&self, request: Self::Request) -> BoxFuture<Self::Response, Status>;
}

/// An [`Export`] served over gRPC.
#[derive(Clone)]
pub struct Server<E> {
    export: E,
    max_decoding_message_size: usize,
}

impl<E: Export> Server<E> {
    pub fn new(export: E, max_decoding_message_size: usize) -> Self {
        Server {
            export,
            max_decoding_message_size,
        }
    }
}

impl<E: Export> NamedService for Server<E> {
    const NAME: &'static str = E::SERVICE;
}

impl<E, B> tower::Service<http::Request<B>> for Server<E>
where
    E: Export,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = Method(self.export.clone());
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<E>(PhantomData))
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

struct Method<E>(E);

impl<E: Export> UnaryService<E::Request> for Method<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<E::Response>, Status>;

    fn call(&mut self, request: Request<E::Request>) -> Self::Future {
        let response = self.0.export(request.into_inner());
        Box::pin(async move { response.await.map(Response::new) })
    }
}

struct OtlpCodec<E>(PhantomData<E>);

impl<E: Export> Codec for OtlpCodec<E> {
    type Encode = E::Response;
    type Decode = E::Request;
    type Encoder = tonic_prost::ProstEncoder<E::Response>;
    type Decoder = OtlpDecoder<E::Request>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        OtlpDecoder(PhantomData)
    }
}

struct OtlpDecoder<T>(PhantomData<T>);

impl<T: Otlp + Send + 'static> Decoder for OtlpDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        // INTERNAL as tonic's own decoder answers: `grpc::Refusals` turns it into
        // INVALID_ARGUMENT and counts it, with every other undecodable request.
        nesting::protobuf(&bytes)
            .map(Some)
            .map_err(|e| Status::new(Code::Internal, e.to_string()))
    }
}
