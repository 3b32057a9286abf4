"""The README's first command, `scripts/run`, in its non-interactive mode: it brings the whole
stack up, the demo's data flows into every table, it prints what it found, and it stops every
process it started."""

import os
import re
import socket
import subprocess
from pathlib import Path

from logbook_stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_main_job_runs_checks_and_cleans_up(tmp_path):
    ports = {name: free_port() for name in ("ch", "api", "grpc", "http", "smtp")}
    env = dict(
        os.environ,
        LOGBOOK_PROFILE="debug",
        LOGBOOK_STATE_DIR=str(tmp_path / "state"),
        CLICKHOUSE_PORT=str(ports["ch"]),
        SMTP_PORT=str(ports["smtp"]),
        LOGBOOK_SERVER_LISTEN=f"127.0.0.1:{ports['api']}",
        LOGBOOK_INGEST_GRPC_LISTEN=f"127.0.0.1:{ports['grpc']}",
        LOGBOOK_INGEST_HTTP_LISTEN=f"127.0.0.1:{ports['http']}",
        DEMO_RATE="100",
        DEMO_BACKFILL_DAYS="1",
    )
    run = subprocess.run([str(ROOT / "scripts" / "run"), "--for", "15s"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "check passed: every table received rows, spans included" in run.stdout, run.stdout
    assert re.search(r"spans per kind: .*Client \d+", run.stdout), run.stdout
    assert "api_calls" in run.stdout and "Xero" in run.stdout, run.stdout
    assert "the API lists api_calls with the demo token: 3 rows" in run.stdout, run.stdout
    assert "stopped: 4 processes" in run.stdout, run.stdout
    # Nothing it started is left: every port is free again, no process runs from its state.
    for name, port in ports.items():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} port {port} still open"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
