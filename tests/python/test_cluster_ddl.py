"""`logbook migrate --cluster logbook` renders the schema for a ClickHouse cluster, and every
statement is checked on the real engine (cluster_ddl_check.py): parsed with ON CLUSTER, run
without it on a server configured as a replica of a one-shard cluster with an in-process Keeper,
and the write path (Distributed → local table → errors view) exercised on plain twins."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from logbook_stack import BIN, ROOT, SERVER

HERE = Path(__file__).parent


def dry_run(args, existing=(), env=None):
    """`logbook migrate --dry-run ARGS` against a fresh engine that first runs `existing`, with
    `env` added to the environment."""
    server = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--exit-on-stdin-eof"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = re.fullmatch(r"listening on (\S+)\n", server.stdout.readline()).group(1)
        for sql in existing:
            urllib.request.urlopen(urllib.request.Request(url, data=sql.encode()), timeout=60).read()
        env = dict(os.environ, LOGBOOK_CLICKHOUSE_URL=url, **(env or {}))
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


def steps(dry_run_output):
    """(description, sql) of each step a dry run prints (`-- description` then the SQL)."""
    return [tuple(block.split("\n", 1)) for block in re.split(r"^-- ", dry_run_output, flags=re.M)
            if "\n" in block and block.split("\n", 1)[1].strip()]


def test_cluster_upgrade_adds_a_missing_projection_to_the_local_tables_on_every_server():
    # A cluster migrated before a projection existed: its local tables as they are on every
    # server (plain engines stand in for the replicated ones, which accept no writes here),
    # `api_calls_local` without `by_time`.
    create = dry_run(["--cluster", "logbook"])
    assert create.returncode == 0, create.stderr
    existing = []
    for _, sql in steps(create.stdout):
        sql = re.sub(r" ON CLUSTER `\w+`", "", sql.strip().rstrip(";"))
        if "ENGINE = Distributed" in sql:
            continue
        existing.append(re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, ([^)]*))?\)",
                               lambda m: m.group(1) + (f"({m.group(2)})" if m.group(2) else ""), sql))
    existing.append("ALTER TABLE logbook.api_calls_local DROP PROJECTION by_time")
    upgrade = dry_run(["--cluster", "logbook"], existing)
    assert upgrade.returncode == 0, upgrade.stderr
    projection_steps = [(d.strip(), sql.strip()) for d, sql in steps(upgrade.stdout) if "PROJECTION" in sql]
    assert projection_steps == [
        ("add projection api_calls.by_time",
         "ALTER TABLE `logbook`.`api_calls_local` ON CLUSTER `logbook` ADD PROJECTION IF NOT EXISTS "
         "by_time (SELECT * ORDER BY time);"),
        ("build projection api_calls.by_time for existing rows",
         "ALTER TABLE `logbook`.`api_calls_local` ON CLUSTER `logbook` MATERIALIZE PROJECTION by_time;"),
    ], upgrade.stdout


def test_the_configured_cluster_is_migrated_as_the_flag_would():
    configured = dry_run([], env={"LOGBOOK_CLICKHOUSE_CLUSTER": "logbook"})
    flag = dry_run(["--cluster", "logbook"])
    assert configured.returncode == 0, configured.stderr
    assert " ON CLUSTER `logbook`" in configured.stdout
    assert configured.stdout == flag.stdout


def test_cluster_name_must_be_an_identifier():
    run = subprocess.run([str(BIN), "migrate", "--cluster", "x; DROP TABLE y", "--dry-run"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "--cluster must be a ClickHouse identifier" in run.stderr
