"""A real OpenTelemetry client: the Python SDK's OTLP exporters (gRPC and HTTP) send logs and
spans to a running `logbook serve`; the rows are counted in ClickHouse (the chdb test server).
Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import clickhouse_connect
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

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))
PASSWORD = "sdk-test-pw"
DATABASE = "sdk_test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first (scripts/test does)"
    tmp = tmp_path_factory.mktemp("logbook")
    clickhouse = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof", "--password", PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", clickhouse.stdout.readline())
    assert match
    url = match.group(1)
    grpc, http, api = free_port(), free_port(), free_port()
    config = tmp / "logbook.toml"
    config.write_text(
        f'[clickhouse]\nurl = "{url}"\npassword = "{PASSWORD}"\ndatabase = "{DATABASE}"\n'
        f'[server]\nlisten = "127.0.0.1:{api}"\n'
        f'[ingest]\ngrpc_listen = "127.0.0.1:{grpc}"\nhttp_listen = "127.0.0.1:{http}"\n'
        f'[queue]\npath = "{tmp / "queue"}"\n[batch]\nmax_age = "200ms"\n')
    subprocess.run([str(BIN), "migrate", "--config", str(config)], check=True, capture_output=True)
    logbook = subprocess.Popen([str(BIN), "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr.log", "w"))
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", http), timeout=1).close()
            socket.create_connection(("127.0.0.1", grpc), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, (tmp / "stderr.log").read_text()
            time.sleep(0.1)
    host, port = url.removeprefix("http://").split(":")
    client = clickhouse_connect.get_client(host=host, port=int(port), password=PASSWORD, database=DATABASE)
    yield {"grpc": f"http://127.0.0.1:{grpc}", "http": f"http://127.0.0.1:{http}", "ch": client}
    logbook.terminate()
    assert logbook.wait(timeout=30) == 0
    clickhouse.stdin.close()
    clickhouse.wait(timeout=30)


def wait_count(client, sql, want, within=20):
    deadline = time.time() + within
    while True:
        have = client.query(sql).result_rows[0][0]
        if have >= want or time.time() > deadline:
            return have
        time.sleep(0.2)


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
