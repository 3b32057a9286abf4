#!/usr/bin/env python3
"""Runs a cluster migration (`logbook migrate --cluster logbook --dry-run` output, on stdin) on
the embedded engine, as far as one process can (docs: /work/shared/notes and docs/scaling.md):

1. every statement, `ON CLUSTER` included, through the engine's parser (formatQuery);
2. every statement with `ON CLUSTER` stripped, for real, on a server configured as replica r1
   of shard 01 of the one-shard cluster `logbook` with an in-process Keeper: replicated CREATEs
   check Keeper paths, macros and engine arguments; Distributed tables their cluster, database,
   table and sharding key; views their source and target;
3. the same statements with plain engines in a twin database: a row inserted through the
   Distributed `api_calls` reaches `api_calls_local` and, through the view, `errors`.

Prints one JSON object; run in its own process (the engine reads its configuration once)."""

import json
import re
import sys
import tempfile
from pathlib import Path

from chdb import session

CONFIG = """<clickhouse>
  <tcp_port>{port}</tcp_port>
  <macros><shard>01</shard><replica>r1</replica><cluster>logbook</cluster></macros>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <remote_servers>
    <logbook><shard><replica><host>localhost</host><port>{port}</port></replica></shard></logbook>
  </remote_servers>
</clickhouse>
"""


def statements(text):
    out = []
    for block in re.split(r"^-- ", text, flags=re.M):
        if not block.strip() or "\n" not in block:
            continue
        description, sql = block.split("\n", 1)
        sql = sql.strip().rstrip(";").strip()
        if sql:
            out.append((description.strip(), sql))
    return out


def main():
    stmts = statements(sys.stdin.read())
    tmp = Path(tempfile.mkdtemp())
    (tmp / "config.xml").write_text(CONFIG.format(port=int(sys.argv[1]) if len(sys.argv) > 1 else 19000))
    s = session.Session(f"{tmp / 'data'}?config-file={tmp / 'config.xml'}")
    q = lambda sql: s.query(sql, "TSV").bytes().decode()  # noqa: E731
    result = {"statements": len(stmts), "on_cluster": 0, "formatted": 0, "ran": 0, "errors": []}
    for description, sql in stmts:
        result["on_cluster"] += " ON CLUSTER " in sql
        literal = sql.replace("\\", "\\\\").replace("'", "\\'")
        if q(f"SELECT formatQuery('{literal}')").strip():
            result["formatted"] += 1
    result["clusters"] = q("SELECT DISTINCT cluster FROM system.clusters").split()
    for description, sql in stmts:
        local = re.sub(r" ON CLUSTER `?\w+`?", "", sql)
        try:
            q(local)
            result["ran"] += 1
        except Exception as e:  # noqa: BLE001 (reported, the test fails on it)
            result["errors"].append(f"{description}: {str(e)[:300]}")
    rows = q("SELECT name, engine FROM system.tables WHERE database = 'logbook' ORDER BY name")
    result["tables"] = dict(line.split("\t") for line in rows.splitlines())
    result["replicas"] = int(q("SELECT count() FROM system.replicas WHERE database = 'logbook'"))
    # Plain-engine twins: the write path through Distributed, local table and view.
    try:
        for description, sql in stmts:
            twin = re.sub(r" ON CLUSTER `?\w+`?", "", sql).replace("`logbook`", "`twin`")
            twin = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'\)", r"\1", twin)
            twin = twin.replace("Distributed('logbook', 'logbook'", "Distributed('logbook', 'twin'")
            q(twin)
        q("INSERT INTO twin.api_calls (id, time, bot, method, url, outcome, status_code) "
          "SETTINGS distributed_foreground_insert = 1 VALUES "
          "(generateUUIDv7(), now64(9), 'twin-bot', 'GET', 'https://x.example', 'error', 502)")
        result["twin_local_rows"] = int(q("SELECT count() FROM twin.api_calls_local"))
        result["twin_errors"] = int(q("SELECT count() FROM twin.errors WHERE source = 'twin-bot'"))
    except Exception as e:  # noqa: BLE001
        result["errors"].append(f"twin: {str(e)[:300]}")
    # Replicated tables must be dropped before the process ends (the engine may abort else).
    q("DROP DATABASE IF EXISTS logbook SYNC")
    print(json.dumps(result))
    s.close()


if __name__ == "__main__":
    main()
