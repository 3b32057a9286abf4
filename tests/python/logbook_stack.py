"""Starts what the Python tests read from: the chdb test server (the real engine), `logbook
migrate` and `logbook serve` on free ports, ready to take OTLP and API requests. The `stack`
fixture (conftest.py) and the `demo_stack` fixture (demo_stack.py) are built on it.
Needs the logbook binary: `cargo build` (scripts/test runs cargo test first), or LOGBOOK_BIN."""

import itertools
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))


_FIRST_PORT, _PORT_COUNT = 10_000, 10_000
_next_port = itertools.count(os.getpid() % _PORT_COUNT * 97)


def free_port():
    """A free port below Linux's ephemeral range (32768-60999), as tests/it/harness.rs picks its
    own (20000-31999). A port that bind(0) handed out is free only until an outgoing connection
    takes it, which can happen before the test's server binds it; ports outside that range are
    taken only by listeners that ask for them. Each call tries the next port and keeps the first
    that binds."""
    for _ in range(_PORT_COUNT):
        port = _FIRST_PORT + next(_next_port) % _PORT_COUNT
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_FIRST_PORT}..{_FIRST_PORT + _PORT_COUNT}")


def wait_ready(grpc, http, api, stderr, within=30):
    """Until both receivers take connections and /readyz answers 200 (ClickHouse reached, the
    schema current); fails with logbook's stderr after `within` seconds."""
    deadline = time.time() + within
    while True:
        try:
            for port in (http, grpc):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            urllib.request.urlopen(f"http://127.0.0.1:{api}/readyz", timeout=1)
            return
        except OSError:
            assert time.time() < deadline, stderr.read_text()
            time.sleep(0.1)


@contextmanager
def running_logbook(tmp, database, password, config_extra=""):
    """A migrated `logbook serve` on its own engine, `config_extra` (TOML) appended to its
    configuration. Yields its addresses and a ClickHouse client on its database; stops both
    afterwards, and fails if logbook does not exit cleanly."""
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first (scripts/test does)"
    clickhouse = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof", "--password", password],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", clickhouse.stdout.readline())
        assert match, "the chdb test server did not start"
        url = match.group(1)
        grpc, http, api = free_port(), free_port(), free_port()
        config = tmp / "logbook.toml"
        config.write_text(
            f'[clickhouse]\nurl = "{url}"\npassword = "{password}"\ndatabase = "{database}"\n'
            f'[server]\nlisten = "127.0.0.1:{api}"\n'
            f'[ingest]\ngrpc_listen = "127.0.0.1:{grpc}"\nhttp_listen = "127.0.0.1:{http}"\n'
            f'[queue]\npath = "{tmp / "queue"}"\n[batch]\nmax_age = "200ms"\n' + config_extra)
        subprocess.run([str(BIN), "migrate", "--config", str(config)], check=True, capture_output=True)
        stderr = tmp / "stderr.log"
        logbook = subprocess.Popen([str(BIN), "serve", "--config", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))
        try:
            wait_ready(grpc, http, api, stderr)
            host, port = url.removeprefix("http://").split(":")
            client = clickhouse_connect.get_client(host=host, port=int(port), password=password,
                                                   database=database)
            yield {"grpc": f"http://127.0.0.1:{grpc}", "http": f"http://127.0.0.1:{http}",
                   "api": f"http://127.0.0.1:{api}", "grpc_port": grpc, "http_port": http,
                   "ch": client, "url": url, "password": password, "tmp": tmp, "config": config}
        finally:
            logbook.terminate()
            assert logbook.wait(timeout=30) == 0, stderr.read_text()
    finally:
        clickhouse.stdin.close()
        clickhouse.wait(timeout=30)


def owner_token(stack, name):
    """A new owner token with `view_audit_logs` for the running `stack`, from `logbook token create`."""
    return subprocess.run(
        [str(BIN), "token", "create", "--name", name, "--role", "owner",
         "--permission", "view_audit_logs", "--config", str(stack["config"])],
        check=True, capture_output=True, text=True).stdout.strip()


def demo_rows_of_every_kind(stack):
    """A second of `logbook demo` into `stack`: its first events cycle through every kind."""
    subprocess.run([str(BIN), "demo", "--endpoint", stack["grpc"], "--rate", "20",
                    "--duration", "1s", "--backfill", "1", "--backfill-per-hour", "2",
                    "--config", str(stack["config"])], check=True, capture_output=True, timeout=120)
