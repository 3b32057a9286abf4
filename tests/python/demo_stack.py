"""A running stack filled by the demo, for tests that read what SREs and analysts would read:
the chdb test server (the real engine), `logbook migrate`, `logbook serve`, and `logbook demo`
with two days of history. Started once per test session (`demo_stack` fixture).
Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import json
import subprocess
import time
import urllib.request

import pytest

from logbook_stack import BIN, running_logbook

PASSWORD = "demo-stack-pw"
DATABASE = "logbook"
BACKFILL_DAYS = 2


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
    with running_logbook(tmp_path_factory.mktemp("demo_stack"), DATABASE, PASSWORD) as stack:
        demo = subprocess.run(
            [str(BIN), "demo", "--endpoint", stack["grpc"], "--duration", "3s",
             "--rate", "100", "--seed", "11", "--backfill", str(BACKFILL_DAYS),
             "--backfill-per-hour", "60"],
            capture_output=True, text=True, timeout=300)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        send_mistakes(stack["http_port"])
        settled(stack["ch"], time.time() + 60)
        yield {"ch": stack["ch"], "url": stack["url"], "password": PASSWORD,
               "metrics": f"{stack['api']}/metrics", "demo_finished": time.time()}
