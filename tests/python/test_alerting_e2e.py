"""End to end, with the real parts: a `logbook serve` on the chdb test server receives OTLP sync
runs in which one integration fails 40% of the time and another 10%; real Prometheus (Debian
`prometheus`) scrapes it and evaluates the repository's own rules; real Alertmanager (Debian
`prometheus-alertmanager`) mails the alert to an SMTP sink (PyPI `aiosmtpd`). The rules and the
Alertmanager config are the committed ones, copied by `scripts/fast-alerting` with every window
and `for:` divided by 720 (24h becomes 2m) and 1s group waits. Also: `promtool check metrics`
finds nothing to say about logbook's /metrics.

Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import email
import email.policy
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from logbook_stack import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))
PASSWORD = "alerting-e2e-pw"
FAILING, HEALTHY = "Failing CRM", "Healthy ERP"


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_until(what, check, within, log=None):
    """Polls `check` until it returns something truthy; fails naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            "\n" + log.read_text()[-3000:] if log and log.exists() else "")
        time.sleep(0.1)


class Inbox:
    """An SMTP sink: every message delivered, parsed, with the time it arrived."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((time.monotonic(), message))
        return "250 OK"

    def snapshot(self):
        with self.lock:
            return list(self.messages)


def text_of(message):
    return message.get_body(preferencelist=("plain",)).get_content()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first (scripts/test does)"
    tmp = tmp_path_factory.mktemp("alerting")
    processes = []

    def start(args, name):
        log = tmp / f"{name}.log"
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                                   stderr=subprocess.STDOUT, cwd=tmp)
        processes.append(process)
        return log

    clickhouse = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof", "--password", PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", clickhouse.stdout.readline())
        assert match
        ports = {name: free_port() for name in ("http", "grpc", "api", "prometheus", "alertmanager")}
        config = tmp / "logbook.toml"
        config.write_text(
            f'[clickhouse]\nurl = "{match.group(1)}"\npassword = "{PASSWORD}"\ndatabase = "alerting_e2e"\n'
            f'[server]\nlisten = "127.0.0.1:{ports["api"]}"\n'
            f'[ingest]\ngrpc_listen = "127.0.0.1:{ports["grpc"]}"\nhttp_listen = "127.0.0.1:{ports["http"]}"\n'
            # One batch in memory at a time: the flood test below measures what label
            # cardinality costs, not the overlap's second batch (docs/benchmarks.md has that).
            f'[queue]\npath = "{tmp / "queue"}"\n[batch]\nmax_age = "100ms"\ninserts_in_flight = 0\n'
            f'[metrics]\nintegration_status_interval = "1s"\n')
        subprocess.run([str(BIN), "migrate", "--config", str(config)], check=True, capture_output=True)
        # logbook sets its allocator's settings itself (freed memory goes back to the OS at once),
        # so the RSS the flood test compares follows live memory.
        logbook_log = start([str(BIN), "serve", "--config", str(config)], "logbook")
        logbook_pid = processes[-1].pid
        metrics_url = f"http://127.0.0.1:{ports['api']}/metrics"
        wait_until("logbook /metrics", lambda: get(metrics_url), 30, logbook_log)

        # The committed rules and Alertmanager config, time-scaled copies.
        subprocess.run([str(ROOT / "scripts" / "fast-alerting"), "rules", "--scale", "720",
                        str(tmp / "rules")], check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fast-alerting"), "alertmanager",
                        "--smarthost", f"127.0.0.1:{smtp.port}", str(tmp / "alertmanager.yml")],
                       check=True)
        am = f"127.0.0.1:{ports['alertmanager']}"
        am_log = start(["prometheus-alertmanager", f"--config.file={tmp / 'alertmanager.yml'}",
                        f"--storage.path={tmp / 'am-data'}", f"--web.listen-address={am}",
                        "--cluster.listen-address="], "alertmanager")
        (tmp / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp / "rules" / "*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
            "scrape_configs": [{"job_name": "logbook", "static_configs": [
                {"targets": [f"127.0.0.1:{ports['api']}"]}]}],
        }))
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        prom_log = start(["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp / 'prom-data'}",
                          f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], "prometheus")
        wait_until("alertmanager ready", lambda: get(f"http://{am}/-/ready"), 30, am_log)
        wait_until("prometheus ready", lambda: get(f"{prometheus}/-/ready"), 30, prom_log)
        yield {"otlp": f"http://127.0.0.1:{ports['http']}/v1/logs", "metrics": metrics_url,
               "pid": logbook_pid,
               "prometheus": prometheus, "inbox": inbox, "logs": (logbook_log, prom_log, am_log)}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        smtp.stop()
        clickhouse.stdin.close()
        clickhouse.wait(timeout=30)


def query(stack, promql):
    url = f"{stack['prometheus']}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    return json.loads(get(url))["data"]["result"]


def sync_run(logger, integration, status):
    logger.emit(LogRecord(
        timestamp=time.time_ns(), severity_number=SeverityNumber.INFO,
        body=f"{integration} sync {status}", event_name="logbook.integration.sync_run",
        attributes={"logbook.integration.name": integration, "logbook.status": status,
                    "logbook.integration.entity": "devices"}))


def test_failing_integration_is_mailed_and_healthy_one_is_not(stack):
    logs = LoggerProvider(resource=Resource.create({"service.name": "integrator"}))
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=stack["otlp"])))
    logger = logs.get_logger("integrator")
    # Waves a second apart, so that Prometheus sees the counters rise (a series' first value
    # is not an increase). Failing CRM: 2 of 5 runs fail (40%); Healthy ERP: 1 of 10 (10%).
    # Within a wave failures come first and a wave is one request (so one batch): both
    # integrations' last finished run is always a completed one, never in Error status.
    first_failure = time.monotonic()
    for wave in range(12):
        for integration, errors in ((FAILING, 2), (HEALTHY, wave % 2)):
            for i in range(5):
                sync_run(logger, integration, "executing")
                sync_run(logger, integration, "error" if i < errors else "completed")
        assert logs.force_flush(10_000)
        time.sleep(1)  # paces the traffic; the assertions below wait on observable events
    logs.shutdown()

    inbox = stack["inbox"]

    def failing_mail():
        return next((m for m in inbox.snapshot() if FAILING in m[1]["Subject"]), None)

    arrived, message = wait_until("the alert email", failing_mail, 120, stack["logs"][1])
    elapsed = arrived - first_failure
    print(f"\nfirst failing sync run to email: {elapsed:.1f}s")
    subject, body = message["Subject"], text_of(message)
    assert "IntegrationErrorRateHigh" in subject and FAILING in subject, subject
    rate = re.search(r"(\d+(?:\.\d+)?)% errors over 24h", subject)
    assert rate, subject
    assert 30 <= float(rate.group(1)) <= 55, subject  # 40%, give or take the windows' edges
    assert f"Integration: {FAILING}" in body and f"Error rate: {rate.group(1)}%" in body, body
    assert "Runbook: docs/runbooks.md#integrationerrorratehigh" in body, body

    # The healthy integration was evaluated, below 30%, and never alerted or mailed.
    ratio = query(stack, f'integration:logbook_integration_sync_runs_error:increase24h{{integration="{HEALTHY}"}}'
                         f' / integration:logbook_integration_sync_runs_terminal:increase24h')
    assert ratio and float(ratio[0]["value"][1]) < 0.3, ratio
    assert query(stack, f'ALERTS{{integration="{HEALTHY}"}}') == []
    for _, mail in inbox.snapshot():
        assert HEALTHY not in mail["Subject"] and HEALTHY not in text_of(mail), mail["Subject"]


def test_metrics_pass_promtool_check_and_are_documented(stack):
    logs = LoggerProvider(resource=Resource.create({"service.name": "integrator"}))
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=stack["otlp"])))
    sync_run(logs.get_logger("integrator"), "Docs Check", "completed")
    logs.shutdown()
    text = wait_until("the business counter and the status gauge", lambda: (
        lambda t: t if 'integration="Docs Check"' in t and "logbook_integration_status{" in t else None)(
        get(stack["metrics"])), 30, stack["logs"][0])
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    operations = (ROOT / "docs" / "operations.md").read_text()
    families = re.findall(r"^# HELP (\w+) ", text, flags=re.M)
    assert len(families) >= 15, families
    for family in families:
        assert f"`{family}" in operations, f"docs/operations.md lacks {family}"


def rss_kib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def metric(text, name, **labels):
    """The value of one series in the exposition text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0


def flood(stack, prefix, names, per_request=10_000):
    """Sends one API call for each of `names` distinct bots, as OTLP/HTTP protobuf."""
    attribute = lambda key, value: KeyValue(key=key, value=AnyValue(string_value=value))
    for start in range(0, names, per_request):
        request = ExportLogsServiceRequest()
        records = request.resource_logs.add().scope_logs.add().log_records
        for i in range(start, start + per_request):
            record = records.add(time_unix_nano=time.time_ns(), event_name="logbook.api_call")
            record.attributes.extend([
                attribute("logbook.bot.name", f"{prefix}-{i}"), attribute("http.request.method", "GET"),
                attribute("url.full", "https://api.example.com/x"), attribute("logbook.outcome", "success")])
        body = request.SerializeToString()
        post = urllib.request.Request(stack["otlp"], data=body, method="POST",
                                      headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(post, timeout=60) as response:
            assert response.status == 200


def test_a_flood_of_bot_names_keeps_series_and_memory_bounded(stack):
    """100,000 distinct bot names: the series stay at metrics.max_label_values (300) plus
    `other`, and memory does not grow with them (100,000 series would take tens of MiB). A
    first flood of 10,000 names, in requests of the same size, fills the cap and the batch
    buffers, so that what the big flood adds is what cardinality would cost."""

    def folded_at_least(expected):
        text = get(stack["metrics"])
        folded = metric(text, "logbook_metric_label_values_folded_total",
                        metric="logbook_api_calls_total", label="bot")
        return text if folded >= expected else None

    rss, sent = [], 0
    for prefix, names in (("warm-up", 10_000), ("flood", 100_000)):
        started = time.monotonic()
        flood(stack, prefix, names)
        sent += names
        text = wait_until(f"{prefix} counted", lambda: folded_at_least(sent - 300), 180, stack["logs"][0])
        print(f"\n{prefix}: {names} names sent and counted in {time.monotonic() - started:.1f}s")
        series = [line for line in text.splitlines() if line.startswith("logbook_api_calls_total{")]
        assert len(series) == 301, len(series)
        assert metric(text, "logbook_api_calls_total", bot="other", method="GET", outcome="success",
                      status_class="none") == sent - 300
        rss.append(rss_kib(stack["pid"]))
    print(f"logbook RSS after 10,000 bot names: {rss[0] // 1024} MiB, after 110,000: {rss[1] // 1024} MiB")
    assert rss[1] - rss[0] < 16 * 1024, rss
