#!/usr/bin/env python3
"""Benchmark (not a test): token bloom filters, `text` indexes, or both, on the searchable
columns of `api_calls`: insert cost, disk, and the API's search queries.

Starts the chdb-backed ClickHouse HTTP server (tests/chdb_http/server.py), creates logbook's
schema with `logbook migrate` (on this engine the searchable columns get `text` indexes) and
three copies of `api_calls` with every projection and index but the searchable columns' ones:
`bloom` (schema version 5: `tokenbf_v1(32768, 3, 0) GRANULARITY 1`), `text` (version 6) and
`both`. The rows of benches/schema_indexes.py are inserted into the three side by side, 1 M
rows per INSERT, the order of the tables rotating per chunk; then the API's search queries run
on each (the SQL of src/query/rows.rs: `hasToken` over the four columns, newest first, 51 rows,
the API's index settings), read in the API's time windows and in one query over
the 7 days. Engine time (median of 3, query condition cache off), rows read, and the granules
`EXPLAIN indexes = 1` leaves.

    LOGBOOK_BIN=target/release/logbook .venv/bin/python benches/text_index.py   # 2,000,000 rows

Results: docs/benchmarks.md ("Schema version 6").
"""

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import api_queries as aq
import schema_indexes as si

SEARCH = ["url", "request_body", "response_body", "error_message"]
VARIANTS = ["bloom", "text", "both"]
# The API's settings (src/query/mod.rs `index_settings`), query condition cache off.
SETTINGS = {"use_skip_indexes_on_data_read": "0", "query_plan_direct_read_from_text_index": "0",
            "use_query_condition_cache": "0"}
PAGE = 51
HOUR_NS = 3_600_000_000_000


def next_reach(reach, found, missing):
    """src/query/rows.rs `next_reach`."""
    if found == 0:
        more = reach * 32
    else:
        more = min(max(int(reach * 1.5 * missing / found), reach), reach * 16)
    return reach + more


def page_sql(table, word, bot, since_ns, until_ns, limit=PAGE):
    where = ["(" + " OR ".join(f"hasToken(`{c}`, '{word}')" for c in SEARCH) + ")",
             f"time >= fromUnixTimestamp64Nano({since_ns})",
             f"time < fromUnixTimestamp64Nano({until_ns})"]
    if bot:
        where.append(f"bot = '{bot}'")
    return (f"SELECT *, toUnixTimestamp64Nano(time) AS _time_ns FROM {table} WHERE "
            f"{' AND '.join(where)} ORDER BY time DESC, id DESC LIMIT {limit}")


def run(srv, sql):
    runs = [json.loads(srv.query(f"{sql} FORMAT JSON", SETTINGS)) for _ in range(3)]
    explain = srv.query(f"EXPLAIN indexes = 1 {sql} FORMAT TSVRaw", SETTINGS)
    _, granules = aq.parse_explain(explain)
    st = runs[-1]["statistics"]
    return {"rows": int(runs[-1]["rows"]), "read": int(st["rows_read"]), "granules": granules,
            "ms": 1000 * statistics.median(float(r["statistics"]["elapsed"]) for r in runs),
            "reads": (re.search(r"ReadFromMergeTree \(([^)]*)\)", explain) or [None, "?"])[1]}


def search(srv, table, word, bot, oldest_ns, newest_ns, windows):
    """A first page as the API reads it (`windows`), or in one query; summed over queries."""
    if not windows:
        parts = [run(srv, page_sql(table, word, bot, oldest_ns, newest_ns))]
    else:
        parts, reach, older_than, found = [], HOUR_NS // 2, newest_ns, 0
        while True:
            since = max(newest_ns - reach, oldest_ns)
            r = run(srv, page_sql(table, word, bot, since, older_than, PAGE - found))
            parts.append(r)
            found += r["rows"]
            if found >= PAGE or since == oldest_ns:
                break
            older_than, reach = since, next_reach(reach, found, PAGE - found)
    return {"queries": len(parts), "ms": sum(p["ms"] for p in parts),
            "read": sum(p["read"] for p in parts), "granules": sum(p["granules"] for p in parts),
            "rows": sum(p["rows"] for p in parts), "reads": ",".join(p["reads"] for p in parts)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    args = ap.parse_args()
    binary = si.logbook_bin(False)
    data_dir = Path(tempfile.mkdtemp(prefix="logbook-text-index-"))
    srv = si.Server(data_dir)
    try:
        cfg = data_dir / "logbook.toml"
        cfg.write_text(f'[clickhouse]\nurl = "{srv.url}"\npassword = "{si.PASSWORD}"\n'
                       f'database = "{si.DB}"\nrequest_timeout = "300s"\n')
        subprocess.run([binary, "migrate", "--config", str(cfg)], check=True, capture_output=True)
        print(f"engine {srv.scalar('SELECT version()')}, load {' '.join(aq.load())}", flush=True)
        indexes = srv.rows(f"SELECT name, expr FROM system.data_skipping_indices WHERE database = '{si.DB}' "
                           f"AND table = 'api_calls' AND type = 'text'")
        assert sorted(i["expr"] for i in indexes) == sorted(SEARCH), indexes
        for v in VARIANTS:
            table = f"{si.DB}.api_calls_{v}"
            srv.query(f"CREATE TABLE {table} AS {si.TABLE}")
            if v == "bloom":
                for c in SEARCH:
                    srv.query(f"ALTER TABLE {table} DROP INDEX text_{c}")
            if v in ("bloom", "both"):
                for c in SEARCH:
                    srv.query(f"ALTER TABLE {table} ADD INDEX idx_{c} {c} "
                              f"TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1")
            shown = srv.scalar(f"SHOW CREATE TABLE {table}")
            print(f"{v}: " + "; ".join(l.strip() for l in shown.splitlines()
                                       if re.match(r"\s*(INDEX|PROJECTION)", l)), flush=True)

        t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        insert_s = {v: [] for v in VARIANTS}
        chunks = (args.rows + si.CHUNK - 1) // si.CHUNK
        for i in range(chunks):
            order = VARIANTS[i % 3:] + VARIANTS[:i % 3]
            for v in order:
                sql = si.INSERT_SQL.format(
                    table=f"{si.DB}.api_calls_{v}", vocab=si.sql_array(si.VOCAB),
                    apps=si.sql_array(si.APPS), resources=si.sql_array(si.RESOURCES),
                    t0=t0.strftime("%Y-%m-%d %H:%M:%S"), span_ms=si.SPAN_DAYS * 86_400_000,
                    req_id_expr=si.REQ_ID_EXPR, start=i * si.CHUNK,
                    count=min(si.CHUNK, args.rows - i * si.CHUNK))
                started = time.monotonic()
                srv.query(sql, {"max_threads": "2", "max_insert_threads": "1"})
                insert_s[v].append(time.monotonic() - started)
                print(f"  chunk {i + 1}/{chunks} into {v}: {insert_s[v][-1]:.1f} s, "
                      f"load {aq.load()[0]}", flush=True)

        print("\n## Insert and disk (compressed)\n")
        print("| variant | insert s per 1 M-row chunk | table's parts | searchable columns' indexes | parts |")
        print("|---|---|---:|---:|---:|")
        for v in VARIANTS:
            parts = srv.rows(f"SELECT count() AS n, sum(data_compressed_bytes) AS b FROM system.parts "
                             f"WHERE database = '{si.DB}' AND table = 'api_calls_{v}' AND active")[0]
            idx = srv.scalar(f"SELECT sum(data_compressed_bytes) FROM system.data_skipping_indices "
                             f"WHERE database = '{si.DB}' AND table = 'api_calls_{v}' "
                             f"AND expr IN ({', '.join(repr(c) for c in SEARCH)})")
            print(f"| {v} | {', '.join(f'{s:.1f}' for s in insert_s[v])} | "
                  f"{int(parts['b']) / 2**20:,.0f} MiB | {int(idx) / 2**20:,.1f} MiB | {parts['n']} |")

        newest = srv.scalar(f"SELECT toUnixTimestamp64Nano(max(time)) FROM {si.DB}.api_calls_bloom")
        newest_ns = int(newest) + 1_000_000_000
        oldest_ns = newest_ns - 7 * 24 * HOUR_NS
        needle = srv.scalar(f"SELECT {si.REQ_ID_EXPR} FROM (SELECT toUInt64(12345) AS n)")
        cases = [("one row's request id", needle, None), ("`timeout`", "timeout", None),
                 ("`timeout` + `bot=bot-07`", "timeout", "bot-07")]
        print(f"\n## Searches, first page of {PAGE - 1} ({args.rows:,} rows; load {' '.join(aq.load())})\n")
        print("| search | variant | reading | queries | engine ms | granules read | rows read | found | reads |")
        print("|---|---|---|---:|---:|---:|---:|---:|---|")
        for label, word, bot in cases:
            for v in VARIANTS:
                for windows in (True, False):
                    r = search(srv, f"{si.DB}.api_calls_{v}", word, bot, oldest_ns, newest_ns, windows)
                    print(f"| {label} | {v} | {'time windows' if windows else 'one query'} | "
                          f"{r['queries']} | {r['ms']:,.0f} | {r['granules']:,} | {r['read']:,} | "
                          f"{r['rows']} | {r['reads']} |", flush=True)
        print(f"\nload at the end {' '.join(aq.load())}")
    finally:
        srv.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
