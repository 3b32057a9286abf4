"""A running stack filled by the demo, for tests that read what SREs and analysts would read:
the chdb test server (the real engine), `logbook migrate`, `logbook serve`, and `logbook demo`
with two days of history. Started once per test session (`demo_stack` fixture).
Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import clickhouse_connect
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))
PASSWORD = "demo-stack-pw"
DATABASE = "logbook"
BACKFILL_DAYS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_mistakes(http_port):
    """What a service with a bug sends besides the demo's clean records: a record missing a
    required attribute and one whose event name names no kind, so that the panels listing
    rejected records have rows."""
    def record(event, attributes):
        return {"timeUnixNano": str(time.time_ns()), "eventName": event,
                "body": {"stringValue": f"mistake: {event}"},
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes]}
    request = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy-importer"}}]},
        "scopeLogs": [{"logRecords": [
            record("logbook.api_call", [("logbook.bot.name", "importer"), ("http.request.method", "GET"),
                                        ("logbook.outcome", "success")]),
            record("logbook.api_calls", [("logbook.bot.name", "importer")]),
        ]}]}]}
    answer = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1/logs", data=json.dumps(request).encode(),
        headers={"content-type": "application/json"}), timeout=10)
    assert answer.status == 200


def settled(client, deadline):
    """Waits until the row counts stop changing (every queued batch is stored)."""
    last = None
    while time.time() < deadline:
        counts = client.query(
            "SELECT groupArray((name, total_rows)) FROM system.tables "
            "WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            parameters={"db": DATABASE}).result_rows[0][0]
        if counts == last:
            return
        last = counts
        time.sleep(1.0)
    raise AssertionError(f"row counts still changing: {last}")


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory):
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first (scripts/test does)"
    tmp = tmp_path_factory.mktemp("demo_stack")
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
    try:
        metrics = f"http://127.0.0.1:{api}/metrics"
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{api}/readyz", timeout=1)
                break
            except OSError:
                assert time.time() < deadline, (tmp / "stderr.log").read_text()
                time.sleep(0.1)
        demo = subprocess.run(
            [str(BIN), "demo", "--endpoint", f"http://127.0.0.1:{grpc}", "--duration", "3s",
             "--rate", "100", "--seed", "11", "--backfill", str(BACKFILL_DAYS),
             "--backfill-per-hour", "60"],
            capture_output=True, text=True, timeout=300)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        host, port = url.removeprefix("http://").split(":")
        client = clickhouse_connect.get_client(host=host, port=int(port), password=PASSWORD,
                                               database=DATABASE)
        send_mistakes(http)
        settled(client, time.time() + 60)
        yield {"ch": client, "url": url, "password": PASSWORD, "metrics": metrics,
               "demo_finished": time.time()}
    finally:
        logbook.terminate()
        logbook.wait(timeout=30)
        clickhouse.stdin.close()
        clickhouse.wait(timeout=30)
