//! The OTLP/gRPC `Export` services, handing the message to logbook still encoded, so that it is
//! decoded as the HTTP receiver decodes ([`super::decode_and_prepare`]): tonic's generated
//! servers decode with prost alone, on the async worker, and refuse a whole request for one
//! value nested past prost's recursion limit. Otherwise the same as the generated servers: one
//! unary method, gzip accepted and sent, a bound on the (decompressed) message size.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, EnabledCompressionEncodings, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// One OTLP signal's `Export` method.
pub trait Export: Clone + Send + Sync + 'static {
    type Response: prost::Message + Send + 'static;
    /// The gRPC service name.
    const SERVICE: &'static str;
    /// `/<service>/Export`.
    const PATH: &'static str;

    /// Handles one request: its protobuf message, decompressed and within the size bound.
    fn export(&self, message: Bytes) -> BoxFuture<Self::Response, Status>;
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

impl<E: Export> UnaryService<Bytes> for Method<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<E::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let response = self.0.export(request.into_inner());
        Box::pin(async move { response.await.map(Response::new) })
    }
}

struct OtlpCodec<E>(PhantomData<E>);

impl<E: Export> Codec for OtlpCodec<E> {
    type Encode = E::Response;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<E::Response>;
    type Decoder = MessageBytes;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageBytes
    }
}

/// The message's bytes, as they are.
struct MessageBytes;

impl Decoder for MessageBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}
