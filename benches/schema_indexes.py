#!/usr/bin/env python3
"""Benchmark (not a test): how selective are the `api_calls` indexes on 10 million rows?

Starts the chdb-backed ClickHouse HTTP server (tests/chdb_http/server.py) on a free port
with a temporary data directory, creates logbook's schema with `logbook migrate` in a
database `bench`, fills `bench.api_calls` server-side (INSERT … SELECT … FROM numbers(),
one INSERT per chunk so the table gets realistic parts), then for a few typical filters
prints `EXPLAIN indexes = 1`, runs the query and reports rows/bytes read, elapsed time
and the fraction of the table read. Measured twice: as inserted (after whatever
background merges happened) and after `OPTIMIZE TABLE … FINAL`.

    .venv/bin/python benches/schema_indexes.py              # 10,000,000 rows
    .venv/bin/python benches/schema_indexes.py --rows 1000000

The logbook binary is `$LOGBOOK_BIN`, else target/debug/logbook (built with
`cargo build -q` when missing or with --build). Results: docs/benchmarks.md.

Rows read and bytes read come from the `statistics` object of the JSON output format,
which the engine fills itself (the chdb HTTP server's `X-ClickHouse-Summary` header is
not reliable for read rows). The query condition cache is disabled so repeated runs read
what the indexes select, not what an earlier run learned.
"""

import argparse
import base64
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "chdb_http" / "server.py"
PASSWORD = "bench-pw"
DB = "bench"
TABLE = f"{DB}.api_calls"
CHUNK = 1_000_000
SPAN_DAYS = 6  # times spread over the last 6 days: inside the table's 7-day TTL

# Words of the response/request bodies. None of them is a token the queries look for.
VOCAB = """account active added address agent amount api approved archived assigned
attachment balance batch billing blocked body brand cache call campaign cancelled card
channel checkout client closed comment company completed config contact contract count
created credit currency customer data deal default deleted delivered description device
discount domain draft due email empty enabled entry event expired export failed field
file filter first form group high id import inbox invoice issue item job key label last
lead limit line list locked low mail member message meta method mobile name new node note
number object offset open order owner page paid partner payment pending phone plan price
priority product profile project queue quote rate record refund region reply report
request resolved result retry role row rule sale schedule score seat segment sent session
sheet sku source stage state status step stock subject subscription summary sync tag task
tax team template tenant ticket title token total type unit update user value vendor view
webhook workflow zone""".split()
APPS = ["Salesforce", "Zendesk", "Google Sheets", "JSON API", "HubSpot", "Jira", "Slack", "Stripe"]
RESOURCES = ["tickets", "contacts", "deals", "orders", "invoices", "users", "messages",
             "sheets", "records", "events"]

# One row per `n`; every value is a hash of n, so a run is reproducible except for the
# times, which are relative to the start of the run.
INSERT_SQL = """
INSERT INTO {table} (id, time, tenant, service, environment, trace_id, span_id, bot,
    application, source, end_user, method, url, status_code, outcome, duration_ms,
    request_body, response_body, error_message)
WITH {vocab} AS vocab, {apps} AS apps, {resources} AS resources,
     [400, 401, 403, 404, 409, 422, 429, 500, 502, 503] AS err_codes,
     [200, 200, 200, 200, 201, 202, 204] AS ok_codes,
     ['GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE'] AS methods
SELECT
    generateUUIDv7(n),
    toDateTime64('{t0}', 9, 'UTC') - toIntervalMillisecond({age_ms}),
    concat('tenant-', toString(cityHash64(n, 4) % 200)),
    'bot-runtime',
    'production',
    lower(concat(hex(cityHash64(n, 5)), hex(cityHash64(n, 6)))),
    lower(hex(cityHash64(n, 7))),
    -- skewed: bot-00 gets ~14 % of the calls, bot-07 ~2.6 %, bot-49 ~1 %
    concat('bot-', leftPad(toString(toUInt8(floor(50 * pow((cityHash64(n, 1) % 1000000) / 1e6, 2)))), 2, '0')),
    app,
    concat('flow-', toString(cityHash64(n, 4) % 500), '/node-', toString(cityHash64(n, 10) % 40)),
    concat('user', toString(cityHash64(n, 11) % 100000), '@example.com'),
    method,
    concat('https://api.', lower(replaceAll(app, ' ', '')), '.example.com/v2/', resource, '/',
           toString(rid), '?page=', toString(cityHash64(n, 13) % 7 + 1)),
    status,
    if(is_error, 'error', 'success'),
    if(is_timeout, 30000, cityHash64(n, 14) % 2000 + 20),
    if(method IN ('GET', 'DELETE'), '',
       concat('{{"', resource, '":{{"external_id":', toString(rid), ',"name":"', words2,
              '","note":"', words3, '"}}}}')),
    if(is_error,
       concat('{{"status":"error","request_id":"', req_id, '","error":{{"code":', toString(status),
              ',"message":"', words3, if(is_timeout, ' upstream timeout', ''), '"}}}}'),
       concat('{{"status":"ok","request_id":"', req_id, '","', resource, '":{{"id":', toString(rid),
              ',"summary":"', words3, '"}}}}')),
    if(is_error, concat('HTTP ', toString(status), if(is_timeout, ': upstream request timed out',
                                                           ': request failed')), '')
FROM
(
    SELECT
        number AS n,
        cityHash64(n, 2) % 100 < 10 AS is_error,             -- 10 % errors
        is_error AND cityHash64(n, 3) % 1000 < 5 AS is_timeout,  -- 'timeout': 0.5 % of errors
        apps[cityHash64(n, 8) % length(apps) + 1] AS app,
        resources[cityHash64(n, 15) % length(resources) + 1] AS resource,
        methods[cityHash64(n, 12) % length(methods) + 1] AS method,
        cityHash64(n, 13) % 10000000 AS rid,
        {req_id_expr} AS req_id,
        toUInt16(if(is_timeout, 504, if(is_error, err_codes[cityHash64(n, 16) % length(err_codes) + 1],
                                        ok_codes[cityHash64(n, 16) % length(ok_codes) + 1]))) AS status,
        arrayStringConcat(arrayMap(i -> vocab[cityHash64(n, 100 + i) % length(vocab) + 1],
                                   range(2 + cityHash64(n, 17) % 2)), ' ') AS words2,
        arrayStringConcat(arrayMap(i -> vocab[cityHash64(n, 200 + i) % length(vocab) + 1],
                                   range(3 + cityHash64(n, 18) % 6)), ' ') AS words3
    FROM numbers({start}, {count})
)
"""
# The request id in the response body: a token unique to its row (a "needle").
REQ_ID_EXPR = "concat('req', lower(hex(cityHash64(n, 9))))"

NO_CACHE = {"use_query_condition_cache": "0"}

# --variants: the same rows copied into a table whose only skip index is this one on
# response_body, to see what another index would select. Not the schema logbook creates.
VARIANTS = [
    ("tokenbf_g1", "tokenbf_v1(32768, 3, 0) GRANULARITY 1"),
    ("text", "text(tokenizer = splitByNonAlpha)"),
]


class Server:
    """tests/chdb_http/server.py on a free port, with its own data directory."""

    def __init__(self, path, extra_args=()):
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--path", str(path),
             "--password", PASSWORD, "--exit-on-stdin-eof", *extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"server did not start: {line!r}")
        self.url = m.group(1)
        auth = base64.b64encode(f"default:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {auth}"}

    def query(self, sql, settings=None):
        params = urllib.parse.urlencode(settings or {})
        req = urllib.request.Request(f"{self.url}/?{params}", data=sql.encode(),
                                     headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=3600) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"query failed: {e.read().decode().strip()}\n{sql}") from None

    def scalar(self, sql):
        return self.query(sql + " FORMAT TSVRaw").strip()

    def rows(self, sql):
        out = json.loads(self.query(sql + " FORMAT JSON"))
        return out["data"]

    def rss(self):
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) * 1024
        return get("VmRSS"), get("VmHWM")

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()


def logbook_bin(build):
    if os.environ.get("LOGBOOK_BIN"):
        return os.environ["LOGBOOK_BIN"]
    path = ROOT / "target" / "debug" / "logbook"
    if build or not path.exists():
        subprocess.run(["cargo", "build", "-q"], cwd=ROOT, check=True)
    return str(path)


def sql_array(items):
    return "[" + ", ".join("'" + s.replace("'", "\\'") + "'" for s in items) + "]"


# A row's age before t0 (ms): a hash of n, so every INSERT spreads over all the days (a
# back-fill: every part holds some of the newest rows) ...
RANDOM_AGE = "cityHash64(n, 0) % {span_ms}"
# ... or n's place in time, so rows arrive oldest first as a live table gets them.
ORDERED_AGE = "intDiv(({rows} - 1 - n) * {span_ms}, {rows})"
# In time order, the newest LIVE_TAIL_HOURS arrive in LIVE_INSERTS small INSERTs, as a live
# table's newest parts are many small ones that merges have not folded yet.
LIVE_TAIL_HOURS = 2
LIVE_INSERTS = 120


def fill(srv, rows, t0, in_time_order=False):
    span_ms = SPAN_DAYS * 86_400_000
    age = (ORDERED_AGE if in_time_order else RANDOM_AGE).format(rows=rows, span_ms=span_ms)
    tail = rows * LIVE_TAIL_HOURS // (SPAN_DAYS * 24) if in_time_order else 0
    bulk = rows - tail
    chunks = [(start, min(CHUNK, bulk - start)) for start in range(0, bulk, CHUNK)]
    step = max(1, -(-tail // LIVE_INSERTS))
    chunks += [(start, min(step, rows - start)) for start in range(bulk, rows, step)]
    started = time.monotonic()
    for i, (start, count) in enumerate(chunks):
        sql = INSERT_SQL.format(
            table=TABLE, vocab=sql_array(VOCAB), apps=sql_array(APPS),
            resources=sql_array(RESOURCES), t0=t0.strftime("%Y-%m-%d %H:%M:%S"),
            age_ms=age, req_id_expr=REQ_ID_EXPR, start=start, count=count)
        t = time.monotonic()
        srv.query(sql, {"max_threads": "2", "max_insert_threads": "1"})
        if count >= CHUNK or i + 1 == len(chunks):
            print(f"  insert {i + 1}/{len(chunks)}: {count:,} rows in {time.monotonic() - t:.1f} s",
                  flush=True)
    return time.monotonic() - started


def parse_explain(text):
    """(index kind, name) -> (parts, total parts, granules, total granules) from EXPLAIN indexes = 1."""
    stages, kind, name = [], None, None
    for line in text.splitlines():
        s = line.strip()
        if s in ("MinMax", "Min-Max", "Partition", "PrimaryKey", "Skip"):
            kind, name, parts = s.replace("-", ""), None, None
        elif s.startswith("Name:") and kind == "Skip":
            name = s.split(":", 1)[1].strip()
        elif s.startswith("Parts:") and kind:
            parts = tuple(int(x) for x in s.split(":", 1)[1].strip().split("/"))
        elif s.startswith("Granules:") and kind:
            granules = tuple(int(x) for x in s.split(":", 1)[1].strip().split("/"))
            stages.append((kind if kind != "Skip" else f"Skip {name}", parts, granules))
            kind = None
    return stages


def hasattr_body(where):
    return "response_body" in where


def measure(srv, label, where, total_rows, repeats, table=TABLE):
    sql_count = f"SELECT count() FROM {table} WHERE {where}"
    sql_page = f"SELECT * FROM {table} WHERE {where} ORDER BY time DESC LIMIT 100"
    explain = srv.query(f"EXPLAIN indexes = 1 {sql_count} FORMAT TSVRaw", NO_CACHE)
    estimate = srv.rows(f"EXPLAIN ESTIMATE {sql_count}")
    print(f"\n### {label}\n\n{sql_count}\n")
    lines = explain.splitlines()
    start = next((i for i, l in enumerate(lines) if "ReadFromMergeTree" in l), 0)
    print("\n".join(l for l in lines[start:] if l.strip()))
    result = {"label": label, "where": where, "stages": parse_explain(explain),
              "estimate_rows": sum(int(r["rows"]) for r in estimate)}
    for kind, sql in (("count", sql_count), ("page", sql_page)):
        runs = []
        for _ in range(repeats):
            t = time.monotonic()
            out = json.loads(srv.query(sql + " FORMAT JSON", NO_CACHE))
            runs.append((time.monotonic() - t, out))
        wall = statistics.median(r[0] for r in runs)
        st = runs[-1][1]["statistics"]
        result[kind] = {
            "rows_read": int(st["rows_read"]), "bytes_read": int(st["bytes_read"]),
            "elapsed": statistics.median(float(r[1]["statistics"]["elapsed"]) for r in runs),
            "wall": wall, "result_rows": int(runs[-1][1]["rows"]),
            "count": int(runs[-1][1]["data"][0]["count()"]) if kind == "count" else None,
        }
        print(f"  {kind}: read {result[kind]['rows_read']:,} rows "
              f"({result[kind]['rows_read'] / total_rows:.2%}), "
              f"{result[kind]['bytes_read'] / 1e6:.1f} MB, {result[kind]['elapsed'] * 1000:.0f} ms"
              + (f", count = {result[kind]['count']:,}" if kind == "count" else ""), flush=True)
    return result


def table_state(srv, table="api_calls"):
    r = srv.rows(f"SELECT count() AS parts, sum(rows) AS rows, sum(marks) AS marks, "
                 f"sum(bytes_on_disk) AS bytes, uniqExact(partition) AS partitions "
                 f"FROM system.parts WHERE database = '{DB}' AND table = '{table}' AND active")[0]
    return {k: int(v) for k, v in r.items()}


def fmt_stage(stage):
    kind, parts, granules = stage
    p = f"{parts[0]}/{parts[1]}" if parts else "?"
    return f"{kind}: {granules[0]:,}/{granules[1]:,} granules ({p} parts)"


def markdown(phases, total_rows):
    out = []
    for phase, state, results in phases:
        out.append(f"\n#### {phase}: {state['parts']} parts in {state['partitions']} partitions, "
                   f"{state['marks']:,} granules, {state['bytes'] / 1e6:,.0f} MB on disk\n")
        out.append("| query | matching rows | granules after MinMax / Partition / PrimaryKey / skip index "
                   "| `count()`: rows read (of table) | bytes read | ms "
                   "| `SELECT * … ORDER BY time DESC LIMIT 100`: rows read | bytes read | ms |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in results:
            stages = "<br>".join(fmt_stage(s) for s in r["stages"])
            c, p = r["count"], r["page"]
            out.append(
                f"| {r['label']} | {c['count']:,} | {stages} "
                f"| {c['rows_read']:,} ({c['rows_read'] / total_rows:.2%}) | {c['bytes_read'] / 1e6:,.1f} MB "
                f"| {c['elapsed'] * 1000:,.0f} "
                f"| {p['rows_read']:,} ({p['rows_read'] / total_rows:.2%}) | {p['bytes_read'] / 1e6:,.1f} MB "
                f"| {p['elapsed'] * 1000:,.0f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="runs per query (median reported)")
    ap.add_argument("--build", action="store_true", help="cargo build -q even if the binary exists")
    ap.add_argument("--no-optimize", action="store_true", help="skip the OPTIMIZE TABLE FINAL phase")
    ap.add_argument("--variants", action="store_true",
                    help="also measure the keyword queries with other response_body indexes (slow)")
    ap.add_argument("--keep", metavar="DIR", help="a new data directory to use and keep (default: a temp dir, removed)")
    args = ap.parse_args()

    binary = logbook_bin(args.build)
    data_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="logbook-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    srv = Server(data_dir)
    try:
        cfg = data_dir / "logbook.toml"
        cfg.write_text(f'[clickhouse]\nurl = "{srv.url}"\npassword = "{PASSWORD}"\n'
                       f'database = "{DB}"\nrequest_timeout = "300s"\n')
        migrate = subprocess.run([binary, "migrate", "--config", str(cfg)], capture_output=True, text=True)
        if migrate.returncode:
            raise SystemExit(f"logbook migrate failed:\n{migrate.stdout}{migrate.stderr}")
        ddl = srv.scalar(f"SHOW CREATE TABLE {TABLE}")
        print(f"engine {srv.scalar('SELECT version()')}, {os.cpu_count()} CPUs, {platform.machine()}")
        print("\n".join(l for l in ddl.splitlines()
                        if re.match(r"\s*(INDEX|ENGINE|PARTITION|ORDER|TTL|SETTINGS)", l)))

        t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        print(f"\nfilling {TABLE} with {args.rows:,} rows ({CHUNK:,} per INSERT), times "
              f"{t0 - dt.timedelta(days=SPAN_DAYS):%Y-%m-%d %H:%M} .. {t0:%Y-%m-%d %H:%M} UTC", flush=True)
        insert_s = fill(srv, args.rows, t0)
        total = int(srv.scalar(f"SELECT count() FROM {TABLE}"))
        errors_rows = int(srv.scalar(f"SELECT count() FROM {DB}.errors"))
        rss_after_insert = srv.rss()
        print(f"inserted {total:,} rows in {insert_s:.0f} s ({total / insert_s:,.0f} rows/s; "
              f"the errors MV added {errors_rows:,} rows to {DB}.errors); server RSS "
              f"{rss_after_insert[0] / 2**20:,.0f} MiB, peak {rss_after_insert[1] / 2**20:,.0f} MiB")
        sizes = srv.rows(f"SELECT name, formatReadableSize(data_compressed_bytes) AS compressed, "
                         f"formatReadableSize(data_uncompressed_bytes) AS uncompressed "
                         f"FROM system.data_skipping_indices WHERE database = '{DB}' AND table = 'api_calls'")
        print("skip index sizes: " + ", ".join(f"{s['name']} {s['compressed']}" for s in sizes))

        needle = srv.scalar(f"SELECT {REQ_ID_EXPR} FROM (SELECT toUInt64({args.rows // 2 + 12345}) AS n)")
        queries = [
            ("(a) bot + outcome + last 24 h",
             "bot = 'bot-07' AND outcome = 'error' AND time >= now() - INTERVAL 24 HOUR"),
            ("(b) keyword `timeout`, 7 days",
             "hasToken(response_body, 'timeout') AND time >= now() - INTERVAL 7 DAY"),
            ("(c) keyword `timeout` + bot, 7 days",
             "bot = 'bot-07' AND hasToken(response_body, 'timeout') AND time >= now() - INTERVAL 7 DAY"),
            ("(d) keyword unique to one row, 7 days",
             f"hasToken(response_body, '{needle}') AND time >= now() - INTERVAL 7 DAY"),
            ("(e) `LIKE '%timeout%'`, 7 days",
             "response_body LIKE '%timeout%' AND time >= now() - INTERVAL 7 DAY"),
            ("(f) keyword `timeout` + outcome, 7 days",
             "outcome = 'error' AND hasToken(response_body, 'timeout') AND time >= now() - INTERVAL 7 DAY"),
        ]

        phases = []
        names = [("as inserted", None)] + ([] if args.no_optimize else [("after OPTIMIZE FINAL", True)])
        for phase, optimize in names:
            if optimize:
                t = time.monotonic()
                srv.query(f"OPTIMIZE TABLE {TABLE} FINAL", {"max_threads": "2"})
                print(f"\nOPTIMIZE TABLE FINAL: {time.monotonic() - t:.0f} s")
            state = table_state(srv)
            print(f"\n## {phase}: {state}")
            results = [measure(srv, label, where, total, args.repeats) for label, where in queries]
            phases.append((phase, state, results))

        for name, index in (VARIANTS if args.variants else []):
            table = f"{DB}.api_calls_{name}"
            srv.query(f"CREATE TABLE {table} AS {TABLE}")
            for idx in re.findall(r"INDEX (\w+)", ddl):
                srv.query(f"ALTER TABLE {table} DROP INDEX {idx}")
            srv.query(f"ALTER TABLE {table} ADD INDEX idx_response_body response_body TYPE {index}")
            t = time.monotonic()
            srv.query(f"INSERT INTO {table} SELECT * FROM {TABLE}", {"max_threads": "2", "max_insert_threads": "1"})
            srv.query(f"OPTIMIZE TABLE {table} FINAL", {"max_threads": "2"})
            size = srv.scalar(f"SELECT formatReadableSize(sum(data_compressed_bytes)) FROM system.data_skipping_indices "
                              f"WHERE database = '{DB}' AND table = 'api_calls_{name}'")
            label = f"variant `{index}` (copy + OPTIMIZE FINAL {time.monotonic() - t:.0f} s, index {size})"
            print(f"\n## {label}")
            results = [measure(srv, qlabel, where, total, args.repeats, table)
                       for qlabel, where in queries if hasattr_body(where)]
            state = table_state(srv, f"api_calls_{name}")
            phases.append((label, state, results))
            srv.query(f"DROP TABLE {table} SYNC")

        rss = srv.rss()
        print(f"\nserver RSS at the end {rss[0] / 2**20:,.0f} MiB, peak {rss[1] / 2**20:,.0f} MiB")
        print(f"\n## Markdown ({total:,} rows, insert {insert_s:.0f} s)")
        print(markdown(phases, total))
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
