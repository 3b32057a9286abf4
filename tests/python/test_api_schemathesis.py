"""schemathesis against a running `logbook serve`: it reads /api/openapi.json with an owner
token, generates requests for every operation from the document (every kind's filters), and
checks that no answer is a server error and every answer matches the document (status code,
content type, body schema). Needs the logbook binary: `cargo build`, or LOGBOOK_BIN."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
BIN = Path(os.environ.get("LOGBOOK_BIN", ROOT / "target" / "debug" / "logbook"))
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
PASSWORD = "schemathesis-pw"
DATABASE = "schemathesis_test"
# Examples per operation: ~35 operations, kept within about two minutes on 2 cores.
MAX_EXAMPLES = 15


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def logbook(tmp_path_factory):
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
        f'[queue]\npath = "{tmp / "queue"}"\n'
        f'[log.file]\npath = "{tmp / "logs" / "logbook.log"}"\n'
        f'[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n')
    subprocess.run([str(BIN), "migrate", "--config", str(config)], check=True, capture_output=True)
    token = subprocess.run(
        [str(BIN), "token", "create", "--name", "schemathesis", "--role", "owner",
         "--permission", "view_audit_logs", "--config", str(config)],
        check=True, capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen([str(BIN), "serve", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr.log", "w"))
    base = f"http://127.0.0.1:{api}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            break
        except OSError:
            assert time.time() < deadline, (tmp / "stderr.log").read_text()
            time.sleep(0.1)
    # A little data of every kind, so list answers have rows whose schema is checked.
    subprocess.run([str(BIN), "demo", "--endpoint", f"http://127.0.0.1:{grpc}", "--rate", "20",
                    "--duration", "1s", "--backfill", "1", "--backfill-per-hour", "2",
                    "--config", str(config)], check=True, capture_output=True, timeout=120)
    yield base, token, tmp
    server.terminate()
    server.wait(timeout=30)
    clickhouse.stdin.close()
    clickhouse.wait(timeout=30)


def test_openapi_document_needs_a_token(logbook):
    base, _, _ = logbook
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{base}/api/openapi.json", timeout=5)
    assert error.value.code == 401


def test_schemathesis_finds_no_failures(logbook):
    base, token, tmp = logbook
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{base}/api/openapi.json",
         "--header", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--phases", "examples,coverage,fuzzing",
         "--max-examples", str(MAX_EXAMPLES),
         "--workers", "2",
         "--seed", "1",
         "--url", base],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, SCHEMATHESIS_HOOKS=""))
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:] + (tmp / "stderr.log").read_text()[-3000:]
    assert "operations" in run.stdout.lower() or "passed" in run.stdout.lower(), run.stdout
