"""Shared fixtures: `stack` runs a real `logbook serve` (migrated) on its own chdb-backed
ClickHouse for one test module, in the database the module names as `DATABASE`, with the
module's `CONFIG_EXTRA` (TOML, `{tmp}` standing for the module's temporary directory) appended
to its configuration. Needs the logbook binary: `cargo build` (scripts/test runs cargo test
first), or LOGBOOK_BIN."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import clickhouse_connect
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))
PASSWORD = "sdk-test-pw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first (scripts/test does)"
    database = getattr(request.module, "DATABASE", "logbook")
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
        f'[clickhouse]\nurl = "{url}"\npassword = "{PASSWORD}"\ndatabase = "{database}"\n'
        f'[server]\nlisten = "127.0.0.1:{api}"\n'
        f'[ingest]\ngrpc_listen = "127.0.0.1:{grpc}"\nhttp_listen = "127.0.0.1:{http}"\n'
        f'[queue]\npath = "{tmp / "queue"}"\n[batch]\nmax_age = "200ms"\n'
        + getattr(request.module, "CONFIG_EXTRA", "").replace("{tmp}", str(tmp)))
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
    client = clickhouse_connect.get_client(host=host, port=int(port), password=PASSWORD, database=database)
    yield {"grpc": f"http://127.0.0.1:{grpc}", "http": f"http://127.0.0.1:{http}", "ch": client,
           "tmp": tmp, "api": f"http://127.0.0.1:{api}", "config": config}
    logbook.terminate()
    assert logbook.wait(timeout=30) == 0
    clickhouse.stdin.close()
    clickhouse.wait(timeout=30)


def wait_count(client, sql, want, within=20):
    """Polls `sql` (a count) until it reaches `want` or `within` seconds pass; its last value."""
    deadline = time.time() + within
    while True:
        have = client.query(sql).result_rows[0][0]
        if have >= want or time.time() > deadline:
            return have
        time.sleep(0.2)
