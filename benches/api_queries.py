#!/usr/bin/env python3
"""Benchmark (not a test): latency and rows/granules read of the API's list pages and keyword
searches over 10 million `api_calls` rows.

Starts the chdb-backed ClickHouse HTTP server (tests/chdb_http/server.py) with `--log-queries`,
creates logbook's schema in a database `bench`, fills `bench.api_calls` server-side with the
rows of benches/schema_indexes.py (INSERT … SELECT … FROM numbers()), starts `logbook serve`
on it with an owner token, then sends each scenario's requests to `/api/v1/logs/api_calls` one
after another and reports the client-side latency (p50, p99, max). The SQL logbook sent for a
scenario's first and last request (every query of it: a page may take several time windows) is
taken from the server's query log and run again directly, and summed:
`EXPLAIN indexes = 1` for the granules each index leaves, and `FORMAT JSON` (query condition
cache off) for the engine's own rows read, bytes read and elapsed time.

    .venv/bin/python benches/api_queries.py                   # 10,000,000 rows
    .venv/bin/python benches/api_queries.py --rows 1000000 --data /tmp/api-bench   # keep the data
    .venv/bin/python benches/api_queries.py --data /tmp/api-bench --optimize      # reuse, merged
    .venv/bin/python benches/api_queries.py --in-time-order    # rows arriving as in a live table

The logbook binary is `$LOGBOOK_BIN`, else target/debug/logbook. Results: docs/benchmarks.md.
"""

import argparse
import datetime as dt
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schema_indexes as si  # noqa: E402  (the rows and the server wrapper are shared)

PATH = "/api/v1/logs/api_calls"
NO_CACHE = {"use_query_condition_cache": "0"}
# A table with the API table's definition and no rows, for `replay_layers`.
EMPTY_TABLE = "api_calls_empty"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load():
    return Path("/proc/loadavg").read_text().split()[:3]


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """One keep-alive connection to logbook's API."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, params):
        url = f"{PATH}?{urllib.parse.urlencode(params)}"
        started = time.perf_counter()
        self.conn.request("GET", url, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - started
        if response.status != 200:
            print(f"  {url}: {response.status} {body[:200]!r}", flush=True)
            return took, None
        return took, json.loads(body)


class QueryLog:
    """The SQL logbook sent, from the chdb server's `--log-queries` file."""

    def __init__(self, path):
        self.path = path
        self.path.touch()

    def mark(self):
        return self.path.stat().st_size

    def list_queries_since(self, mark):
        """The SELECTs on `api_calls` one request sent (a page may take several time windows,
        src/query/rows.rs); the server logs a query before running it, so they are all there
        once the response is."""
        with open(self.path) as f:
            f.seek(mark)
            entries = [json.loads(line) for line in f]
        found = [e for e in entries
                 if "FROM `api_calls`" in e["sql"] and e["sql"].lstrip().startswith("SELECT")]
        if not found:
            raise SystemExit("the API's query is not in the query log")
        return found


def quantile(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def parse_explain(text):
    """From `EXPLAIN indexes = 1` (a tree drawn with box characters): the index stages as
    (name, parts, granules) and the granules ReadFromMergeTree is left to read."""
    stages, kind, name, parts, read = [], None, None, None, 0
    for line in text.splitlines():
        s = line.strip(" \t│├└─")
        m = re.match(r"Parts: \d+ \| Granules: (\d+)", s)
        if m:
            read += int(m.group(1))
        elif s in ("MinMax", "Min-Max", "Partition", "PrimaryKey", "Skip"):
            kind, name, parts = s.replace("-", ""), None, None
        elif s.startswith("Name:") and kind == "Skip":
            name = s.split(":", 1)[1].strip()
        elif s.startswith("Parts:") and kind:
            parts = tuple(int(x) for x in s.split(":", 1)[1].strip().split("/"))
        elif s.startswith("Granules:") and kind:
            granules = tuple(int(x) for x in s.split(":", 1)[1].strip().split("/"))
            stages.append((kind if kind != "Skip" else f"Skip {name}", parts, granules))
            kind = None
    return stages, read


def analyse(srv, entry, repeats=3):
    """Granules per index stage, and the engine's rows/bytes read and time for the API's SQL."""
    sql = re.sub(r"\s*FORMAT\s+\w+\s*$", "", entry["sql"].strip())
    settings = dict(entry["settings"], database=entry["database"] or si.DB)
    settings.update({f"param_{k}": v for k, v in entry["params"].items()})
    explain = srv.query(f"EXPLAIN indexes = 1 {sql} FORMAT TSVRaw", {**settings, **NO_CACHE})
    runs = [json.loads(srv.query(f"{sql} FORMAT JSON", {**settings, **NO_CACHE}))
            for _ in range(repeats)]
    st = runs[-1]["statistics"]
    projection = re.search(r"ReadFromMergeTree \(([^)]*)\)", explain)
    stages, read = parse_explain(explain)
    return {"stages": stages, "granules_read": read, "rows_read": int(st["rows_read"]),
            "bytes_read": int(st["bytes_read"]),
            "elapsed": statistics.median(float(r["statistics"]["elapsed"]) for r in runs),
            "reads": projection.group(1) if projection else "?", "sql": sql,
            "params": entry["params"]}


class Replay:
    """The SQL of a request sent again straight to the ClickHouse server, on one keep-alive
    connection as logbook's client uses: what the request costs without logbook."""

    def __init__(self, srv):
        url = urllib.parse.urlsplit(srv.url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.headers = srv.headers

    def run(self, entries, table=None):
        """Runs each query of a request in turn (on `table` instead of the API's when given);
        the seconds they took together."""
        took = 0.0
        for entry in entries:
            sql = entry["sql"] if table is None else entry["sql"].replace(
                f"FROM `{si.TABLE.split('.')[-1]}`", f"FROM `{table}`")
            params = dict(entry["settings"], database=entry["database"] or si.DB,
                          default_format="JSONEachRow",
                          **{f"param_{k}": v for k, v in entry["params"].items()})
            started = time.perf_counter()
            self.conn.request("POST", "/?" + urllib.parse.urlencode(params), body=sql.encode(),
                              headers=self.headers)
            response = self.conn.getresponse()
            body = response.read()
            took += time.perf_counter() - started
            if response.status != 200:
                raise SystemExit(f"replay failed: {body[:300]!r}\n{sql}")
        return took


def replay_layers(replay, entries, n):
    """p50 and p99 of the first request's SQL straight to the server, and on an empty table of
    the same definition (what planning a query of that shape costs, whatever the rows)."""
    direct = [replay.run(entries) for _ in range(n)]
    empty = [replay.run(entries, EMPTY_TABLE) for _ in range(n)]
    return {"direct": (quantile(direct, 0.5), quantile(direct, 0.99)),
            "empty": (quantile(empty, 0.5), quantile(empty, 0.99))}


def run_scenario(api, log, label, requests, walk):
    """`requests`: query parameters per request; with `walk`, one request followed page after
    page by its `next_cursor` until `walk` pages."""
    times, entries, before, failed = [], [], load(), 0
    if walk:
        params = requests[0]
        for i in range(walk):
            mark = log.mark()
            took, page = api.get(params)
            times.append(took)
            failed += page is None
            if i == 0 or i == walk - 1 or not page or not page["next_cursor"]:
                entries.append(log.list_queries_since(mark))
            if not page or not page["next_cursor"]:
                break
            params = dict(requests[0], cursor=page["next_cursor"])
    else:
        for i, params in enumerate(requests):
            mark = log.mark()
            took, page = api.get(params)
            times.append(took)
            failed += page is None
            if i in (0, len(requests) - 1):
                entries.append(log.list_queries_since(mark))
    result = {"label": label, "n": len(times), "p50": quantile(times, 0.5),
              "p99": quantile(times, 0.99), "max": max(times), "failed": failed,
              "load": (before, load()), "entries": entries}
    print(f"{label}: {len(times)} requests, p50 {result['p50'] * 1000:.0f} ms, "
          f"p99 {result['p99'] * 1000:.0f} ms, max {result['max'] * 1000:.0f} ms, "
          f"{failed} not 200, slowest #{times.index(max(times)) + 1} "
          f"({', '.join(f'{t * 1000:.0f}' for t in sorted(times)[-4:])} ms), "
          f"load {' '.join(before)} -> {' '.join(result['load'][1])}", flush=True)
    return result


def request_cost(srv, entries, table_granules):
    """What one request cost the engine, summed over its queries: granules read (of the table
    or of a projection, which has about as many) and their share of the table's granules, rows
    read, engine ms."""
    analyses = [analyse(srv, entry) for entry in entries]
    read = sum(a["granules_read"] for a in analyses)
    return {"analyses": analyses, "queries": len(analyses),
            "granules": f"{read:,} ({read / table_granules:.2%})",
            "rows_read": sum(a["rows_read"] for a in analyses),
            "elapsed": sum(a["elapsed"] for a in analyses)}


def disk_usage(srv):
    """Compressed bytes on disk of the table's own columns and of each projection."""
    table = srv.rows(f"SELECT sum(data_compressed_bytes) AS bytes FROM system.parts "
                     f"WHERE database = '{si.DB}' AND table = 'api_calls' AND active")
    projections = srv.rows(f"SELECT name, sum(data_compressed_bytes) AS bytes FROM system.projection_parts "
                           f"WHERE database = '{si.DB}' AND table = 'api_calls' AND active GROUP BY name ORDER BY name")
    indexes = srv.rows(f"SELECT type, sum(data_compressed_bytes) AS bytes FROM system.data_skipping_indices "
                       f"WHERE database = '{si.DB}' AND table = 'api_calls' GROUP BY type ORDER BY type")
    return [("table (parts, as system.parts counts them)", int(table[0]["bytes"]))] + \
        [(f"projection {p['name']}", int(p["bytes"])) for p in projections] + \
        [(f"skip indexes of type {i['type']}", int(i["bytes"])) for i in indexes]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--pages", type=int, default=100, help="pages walked per list scenario")
    ap.add_argument("--searches", type=int, default=30, help="requests per search scenario")
    ap.add_argument("--data", metavar="DIR",
                    help="data directory to use and keep; rows already there are reused")
    ap.add_argument("--optimize", action="store_true",
                    help="OPTIMIZE TABLE … FINAL first (one part per day) instead of the parts as inserted")
    ap.add_argument("--in-time-order", action="store_true",
                    help="fill the rows oldest first, the newest two hours in 120 small INSERTs, "
                         "as logbook fills a live table (default: every INSERT spread over all the "
                         "days, as a back-fill)")
    ap.add_argument("--stop-merges", action="store_true",
                    help="SYSTEM STOP MERGES on the table while measuring: the parts as they are, "
                         "without merges competing for the cores")
    ap.add_argument("--replays", type=int, default=50,
                    help="times each list scenario's first request is sent straight to the server")
    args = ap.parse_args()

    binary = si.logbook_bin(False)
    data_dir = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="logbook-api-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    log = QueryLog(data_dir / "queries.jsonl")
    srv = si.Server(data_dir / "clickhouse", ["--log-queries", str(log.path)])
    serve = None
    try:
        api_port = free_port()
        cfg = data_dir / "logbook.toml"
        cfg.write_text(
            f'[clickhouse]\nurl = "{srv.url}"\npassword = "{si.PASSWORD}"\ndatabase = "{si.DB}"\n'
            f'request_timeout = "300s"\n[server]\nlisten = "127.0.0.1:{api_port}"\n'
            f'[ingest]\ngrpc_listen = "127.0.0.1:{free_port()}"\n'
            f'http_listen = "127.0.0.1:{free_port()}"\n[queue]\npath = "{data_dir / "queue"}"\n'
            "[api]\nrate_limit_per_second = 100000\nrate_limit_burst = 100000\n")
        started = time.monotonic()
        migrate = subprocess.run([binary, "migrate", "--config", str(cfg)], capture_output=True, text=True)
        if migrate.returncode:
            raise SystemExit(f"logbook migrate failed:\n{migrate.stdout}{migrate.stderr}")
        # An upgrade builds new indexes and projections for the stored rows in the background
        # (MATERIALIZE …): measure on the upgraded table, and say how long that took.
        while int(srv.scalar(f"SELECT count() FROM system.mutations WHERE database = '{si.DB}' "
                             f"AND NOT is_done")):
            time.sleep(1)
        steps = [l for l in migrate.stderr.splitlines() if "migrating" in l]
        if steps and int(srv.scalar(f"SELECT count() FROM {si.TABLE}")):
            print(f"migrated the stored rows in {len(steps)} steps, mutations done after "
                  f"{time.monotonic() - started:.0f} s", flush=True)
        have = int(srv.scalar(f"SELECT count() FROM {si.TABLE}"))
        if have < args.rows:
            srv.query(f"TRUNCATE TABLE {si.TABLE}")
            t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            print(f"filling {si.TABLE} with {args.rows:,} rows", flush=True)
            insert_s = si.fill(srv, args.rows, t0, args.in_time_order)
            print(f"inserted in {insert_s:.0f} s", flush=True)
        if args.optimize:
            started = time.monotonic()
            srv.query(f"OPTIMIZE TABLE {si.TABLE} FINAL", {"max_threads": "2"})
            print(f"OPTIMIZE TABLE FINAL: {time.monotonic() - started:.0f} s", flush=True)
        if args.stop_merges:
            srv.query(f"SYSTEM STOP MERGES {si.TABLE}")
            print("merges stopped while measuring", flush=True)
        srv.query(f"DROP TABLE IF EXISTS {si.DB}.{EMPTY_TABLE}")
        srv.query(f"CREATE TABLE {si.DB}.{EMPTY_TABLE} AS {si.TABLE}")
        total_rows = int(srv.scalar(f"SELECT count() FROM {si.TABLE}"))
        newest = srv.scalar(f"SELECT max(time) FROM {si.TABLE}")
        state = si.table_state(srv)
        print(f"engine {srv.scalar('SELECT version()')}, {total_rows:,} rows, newest {newest}, "
              f"{state}", flush=True)

        token = subprocess.run([binary, "token", "create", "--name", "bench", "--role", "owner",
                                "--config", str(cfg)], check=True, capture_output=True,
                               text=True).stdout.strip()
        serve = subprocess.Popen([binary, "serve", "--config", str(cfg)],
                                 stdout=subprocess.DEVNULL, stderr=open(data_dir / "serve.log", "w"))
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or serve.poll() is not None:
                    raise SystemExit((data_dir / "serve.log").read_text())
                time.sleep(0.2)
        api = Api(api_port, token)

        # "Now" is the newest row's time: the rows were made once, and a page's first time
        # window (src/query/rows.rs) reaches back from its newest time, so on data filled an
        # hour ago every page would start with an empty window. Every request carries
        # `to = now` (a bound a live list does not need: its newest rows are just before now).
        now = dt.datetime.fromisoformat(newest.replace(" ", "T")[:26]).replace(
            tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1)
        to_now = rfc3339(now)
        week = rfc3339(now - dt.timedelta(days=7))
        needles = srv.scalar(
            f"SELECT arrayStringConcat(groupArray({si.REQ_ID_EXPR}), ' ') FROM "
            f"(SELECT number * {args.rows // args.searches} + 12345 AS n FROM numbers({args.searches}))"
        ).split()
        # Distinct `to` bounds a minute apart, so no two searches are the same query.
        tos = [rfc3339(now - dt.timedelta(minutes=i)) for i in range(args.searches)]
        scenarios = [
            ("list: newest pages, no filter", [{"to": to_now}], args.pages),
            ("list: bot-07's errors (`bot`, `outcome`)",
             [{"bot": "bot-07", "outcome": "error", "to": to_now}], args.pages),
            ("list: one tenant (`tenant`)", [{"tenant": "tenant-42", "to": to_now}], args.pages),
            ("list: last 24 h, errors (`from`, `outcome`)",
             [{"from": rfc3339(now - dt.timedelta(hours=24)), "outcome": "error", "to": to_now}],
             args.pages),
            ("search: `q=timeout`, 7 days (first page)",
             [{"q": "timeout", "from": week, "to": to} for to in tos], 0),
            ("search: one row's request id, 7 days (first page)",
             [{"q": needle, "from": week, "to": to_now} for needle in needles], 0),
            ("search: `q=timeout` + `bot=bot-07`, 7 days (first page)",
             [{"q": "timeout", "bot": "bot-07", "from": week, "to": to} for to in tos], 0),
        ]
        print(f"\nuptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        results = [run_scenario(api, log, label, requests, walk) for label, requests, walk in scenarios]
        replay = Replay(srv)
        for r in results:
            r["layers"] = replay_layers(replay, r["entries"][0], args.replays)
        print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")

        print("\n## Disk (compressed)\n")
        for name, size in disk_usage(srv):
            print(f"- {name}: {size / 2**20:,.0f} MiB")
        print(f"\n## Markdown ({total_rows:,} rows, {state['marks']:,} granules, {state['parts']} parts)\n")
        print("| scenario | requests | p50 ms | p99 ms | max ms | first request: queries | granules read | "
              "rows read | engine ms | last request: queries | granules read | rows read | engine ms | "
              "load (1 min) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in results:
            cells = []
            for entries in (r["entries"][0], r["entries"][-1]):
                c = request_cost(srv, entries, state["marks"])
                r.setdefault("cost", []).append(c)
                cells += [str(c["queries"]), c["granules"],
                          f"{c['rows_read']:,} ({c['rows_read'] / total_rows:.2%})",
                          f"{c['elapsed'] * 1000:,.0f}"]
            failed = f" ({r['failed']} not 200)" if r["failed"] else ""
            print(f"| {r['label']} | {r['n']}{failed} | {r['p50'] * 1000:,.0f} | {r['p99'] * 1000:,.0f} | "
                  f"{r['max'] * 1000:,.0f} | " + " | ".join(cells) +
                  f" | {r['load'][0][0]} → {r['load'][1][0]} |", flush=True)
        print("\n## Index stages and SQL of each first request\n")
        for r in results:
            for a in r["cost"][0]["analyses"]:
                print(f"- {r['label']} (reads {a['reads']}): "
                      + "; ".join(si.fmt_stage(s) for s in a["stages"])
                      + f"; ReadFromMergeTree: {a['granules_read']:,} granules, "
                        f"{a['rows_read']:,} rows read")
                print(f"  `{a['sql']}` {json.dumps(a['params'])}")
        print("\n## Where a request's time goes (first request, ms, p50 / p99)\n")
        print(f"The same SQL sent {args.replays} times straight to the server, and on an empty table "
              "of the same definition.\n")
        print("| scenario | through logbook | straight to the server | on an empty table |")
        print("|---|---:|---:|---:|")
        for r in results:
            d, e = r["layers"]["direct"], r["layers"]["empty"]
            print(f"| {r['label']} | {r['p50'] * 1000:,.0f} / {r['p99'] * 1000:,.0f} | "
                  f"{d[0] * 1000:,.1f} / {d[1] * 1000:,.1f} | {e[0] * 1000:,.1f} / {e[1] * 1000:,.1f} |")
    finally:
        if args.stop_merges:
            srv.query(f"SYSTEM START MERGES {si.TABLE}")
        if serve:
            serve.terminate()
            serve.wait(timeout=30)
        srv.stop()
        if not args.data:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
