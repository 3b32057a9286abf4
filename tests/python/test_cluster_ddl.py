"""`logbook migrate --cluster logbook` renders the schema for a ClickHouse cluster, and every
statement is checked on the real engine (cluster_ddl_check.py): parsed with ON CLUSTER, run
without it on a server configured as a replica of a one-shard cluster with an in-process Keeper,
and the write path (Distributed → local table → errors view) exercised on plain twins."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from logbook_stack import BIN, ROOT, SERVER

HERE = Path(__file__).parent


def dry_run(args):
    server = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = re.fullmatch(r"listening on (\S+)\n", server.stdout.readline()).group(1)
        env = dict(os.environ, LOGBOOK_CLICKHOUSE_URL=url)
        return subprocess.run([str(BIN), "migrate", "--dry-run", *args], env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def test_cluster_migration_runs_on_the_engine_as_replicated_and_distributed_tables():
    run = dry_run(["--cluster", "logbook"])
    assert run.returncode == 0, run.stderr
    check = subprocess.run([sys.executable, str(HERE / "cluster_ddl_check.py")],
                           input=run.stdout, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert check.returncode == 0, check.stderr
    result = json.loads(check.stdout)
    assert result["errors"] == []
    n = result["statements"]
    assert n >= 50 and result["on_cluster"] == n and result["formatted"] == n and result["ran"] == n
    assert result["clusters"] == ["logbook"]
    tables = result["tables"]
    # Every table of the single-server schema is a Distributed table over a Replicated local one.
    single = dry_run([])
    names = re.findall(r"^CREATE TABLE IF NOT EXISTS `logbook`\.`(\w+)`", single.stdout, re.M)
    assert len(names) >= 20
    for name in names:
        if name == "logbook_migrations":
            assert tables[name] == "ReplicatedMergeTree"
            continue
        assert tables[name] == "Distributed", name
        assert tables[f"{name}_local"].startswith("Replicated"), name
    assert result["replicas"] == len(names)
    assert (result["twin_local_rows"], result["twin_errors"]) == (1, 1)


def test_cluster_name_must_be_an_identifier():
    run = subprocess.run([str(BIN), "migrate", "--cluster", "x; DROP TABLE y", "--dry-run"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "--cluster must be a ClickHouse identifier" in run.stderr
