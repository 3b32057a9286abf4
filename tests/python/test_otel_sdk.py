"""A real OpenTelemetry client: the Python SDK's OTLP exporters (gRPC and HTTP) send logs and
spans to a running `logbook serve`; the rows are counted in ClickHouse (the chdb test server).
Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import time

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from conftest import wait_count

# The `stack` fixture (conftest.py): logbook on its own ClickHouse, in database `sdk_test`.
DATABASE = "sdk_test"


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_logs_and_spans_are_stored(stack, transport):
    resource = Resource.create({"service.name": f"sdk-{transport}", "deployment.environment.name": "ci"})
    if transport == "grpc":
        log_exporter = GrpcLogExporter(endpoint=stack["grpc"], insecure=True)
        span_exporter = GrpcSpanExporter(endpoint=stack["grpc"], insecure=True)
    else:
        log_exporter = HttpLogExporter(endpoint=stack["http"] + "/v1/logs")
        span_exporter = HttpSpanExporter(endpoint=stack["http"] + "/v1/traces")
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(span_exporter))
    logger = logs.get_logger("sdk-test")
    tracer = traces.get_tracer("sdk-test")

    for i in range(50):
        with tracer.start_as_current_span(f"call {i}"):
            logger.emit(LogRecord(
                timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, body=f"call {i}",
                event_name="logbook.api_call",
                attributes={"logbook.bot.name": f"sdk-bot-{transport}", "http.request.method": "GET",
                            "url.full": "https://api.example.com/items?token=t0k3n-sdk",
                            "http.response.status_code": 200, "logbook.outcome": "success"}))
    for i in range(20):
        logger.emit(LogRecord(timestamp=time.time_ns(), severity_number=SeverityNumber.WARN,
                              body=f"plain {i}"))
    assert logs.force_flush(10_000) and traces.force_flush(10_000)
    logs.shutdown()
    traces.shutdown()

    ch = stack["ch"]
    service = f"sdk-{transport}"
    assert wait_count(ch, f"SELECT count() FROM otel_logs WHERE ServiceName = '{service}'", 70) == 70
    assert wait_count(ch, f"SELECT count() FROM otel_traces WHERE ServiceName = '{service}'", 50) == 50
    assert wait_count(ch, f"SELECT count() FROM api_calls WHERE bot = 'sdk-bot-{transport}'", 50) == 50
    # Each typed row links to its span, and the token in the URL never reached the table.
    linked = ch.query(
        f"SELECT count() FROM api_calls a INNER JOIN otel_traces t ON a.span_id = t.SpanId "
        f"WHERE a.bot = 'sdk-bot-{transport}'").result_rows[0][0]
    assert linked == 50
    leaked = ch.query("SELECT count() FROM api_calls WHERE position(url, 't0k3n-sdk') > 0").result_rows[0][0]
    assert leaked == 0
