"""The Grafana dashboards in dashboards/, tested for what Grafana would do with them (Grafana
itself cannot run here): generated from the data dictionary and current; every panel's SQL,
expanded as the ClickHouse plugin expands it, runs on the real engine against the demo's data
and returns the columns its visualisation needs; every PromQL expression is accepted by
Prometheus (`promtool check rules`) and names series logbook exports; every datasource uid is
provisioned; panel ids are unique; the JSON has the shape of a current Grafana dashboard
(the documented subset in grafana_dashboard.schema.json)."""

import json
import re
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from demo_stack import BACKFILL_DAYS, demo_stack  # noqa: F401 (fixture)
from logbook_stack import ROOT
from grafana_queries import ALL, Range, expand, utc

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
SCHEMA = json.loads((Path(__file__).parent / "grafana_dashboard.schema.json").read_text())
INTERVAL_S = 300
# Panels the demo's data cannot fill, with the reason.
EXPECTED_EMPTY = {}


def load(path):
    return json.loads(path.read_text())


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def sql_targets():
    for path in DASHBOARDS:
        d = load(path)
        for p in panels(d):
            for t in p.get("targets", []):
                if t["datasource"]["uid"] == "clickhouse":
                    yield pytest.param(d, p, t, id=f"{d['uid']}:{p['id']}:{p['title']}")


def test_committed_dashboards_are_what_the_generator_makes():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "dashboards.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(DASHBOARDS) >= 6


def test_dashboards_have_the_shape_of_grafana_dashboards():
    uids = set()
    for path in DASHBOARDS:
        d = load(path)
        jsonschema.validate(d, SCHEMA)
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        assert d["uid"] not in uids
        uids.add(d["uid"])
        for p in panels(d):
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{path.name}: {p['title']} overflows the grid"


def provisioned_uids():
    uids = {}
    for f in (PROVISIONING / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(f.read_text())["datasources"]:
            uids[ds["uid"]] = ds
    return uids


def test_every_datasource_a_dashboard_uses_is_provisioned():
    uids = provisioned_uids()
    assert {"clickhouse", "prometheus", "alertmanager"} <= set(uids)
    assert uids["clickhouse"]["type"] == "grafana-clickhouse-datasource"
    traces = uids["clickhouse"]["jsonData"]["traces"]
    logs = uids["clickhouse"]["jsonData"]["logs"]
    assert (traces["defaultTable"], traces["otelEnabled"]) == ("otel_traces", True)
    assert (logs["defaultTable"], logs["otelEnabled"]) == ("otel_logs", True)
    used = set()
    for path in DASHBOARDS:
        text = path.read_text()
        for uid in re.findall(r'"uid": "([^"]+)"', text):
            if uid != load(path)["uid"]:
                used.add((path.name, uid))
    assert used, "no datasource found"
    for name, uid in used:
        assert uid in uids, f"{name} uses datasource {uid}, not provisioned"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "logbook.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_data_links_lead_to_the_trace_dashboard_and_its_logs_panel():
    trace = load(ROOT / "dashboards" / "trace.json")
    links = [link for path in DASHBOARDS for p in panels(load(path))
             for o in p.get("fieldConfig", {}).get("overrides", []) for prop in o["properties"]
             if prop["id"] == "links" for link in prop["value"]]
    assert len(links) >= 20
    for link in links:
        m = re.match(r"/d/([\w-]+)/\w+\?var-trace_id=\$\{__value\.raw\}(&viewPanel=(\d+))?", link["url"])
        assert m and m.group(1) == trace["uid"], link
        if m.group(3):
            target = next(p for p in panels(trace) if p["id"] == int(m.group(3)))
            assert target["type"] == "logs"


# --- the queries, on the engine -----------------------------------------------------------------

def run(stack, sql):
    return stack["ch"].query(sql)


def time_range(stack, panel):
    end = utc(stack["demo_finished"] + 60)
    days = int(panel["timeFrom"].rstrip("d")) if panel.get("timeFrom") else BACKFILL_DAYS + 1
    return Range(end - timedelta(days=days), end, INTERVAL_S)


def variable_values(stack, dashboard, choose):
    """Each variable's value: everything (`choose` false) or a real one (the first value its
    own query returns on the demo's data)."""
    r = Range(utc(stack["demo_finished"] - 86400 * (BACKFILL_DAYS + 1)),
              utc(stack["demo_finished"] + 60), INTERVAL_S)
    values = {}
    for v in dashboard["templating"]["list"]:
        name = v["name"]
        if v["type"] == "textbox":
            values[name] = real_trace_id(stack) if name == "trace_id" else ("it's" if choose else "")
            continue
        if v["type"] == "query":
            found = [row[0] for row in run(stack, expand(v["query"], values, r)).result_rows]
            assert found, f"variable {name} has no values on the demo data"
        else:
            found = [o["value"] for o in v["options"]]
        if not v.get("multi"):
            values[name] = v["current"]["value"] if not choose else found[0]
        else:
            values[name] = [str(found[0])] if choose else [ALL]
    return values


def real_trace_id(stack):
    rows = run(stack, "SELECT trace_id FROM api_calls WHERE trace_id != '' LIMIT 1").result_rows
    return rows[0][0] if rows else "0" * 32


def columns(stack, sql):
    """The result's column names and types, as the engine describes them."""
    described = run(stack, f"DESCRIBE ({sql})").result_rows
    return [r[0] for r in described], [r[1] for r in described]


def check_columns(panel, target, names, types):
    kind = panel["type"]
    if kind == "timeseries":
        assert target["format"] == 0
        assert names[0] == "time" and types[0].startswith("DateTime"), (names, types)
        numeric = [t for t in types[1:] if re.match(r"(U?Int|Float|Decimal)", t)]
        assert numeric, f"no value column: {names} {types}"
    elif kind == "logs":
        assert target["format"] == 2
        assert types[0].startswith("DateTime"), (names, types)
        assert {"body", "message"} & set(names), names
    elif kind == "traces":
        assert target["format"] == 3
        assert {"traceID", "spanID", "parentSpanID", "serviceName", "operationName",
                "startTime", "duration", "tags", "serviceTags"} <= set(names), names
    elif kind in ("barchart", "stat"):
        assert any(re.match(r"(U?Int|Float)", t) for t in types), (names, types)
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            assert o["matcher"]["options"] in names, f"override on missing column {o['matcher']}"


@pytest.mark.parametrize("dashboard,panel,target", list(sql_targets()))
def test_panel_query_runs_on_the_demo_data(demo_stack, dashboard, panel, target):  # noqa: F811
    r = time_range(demo_stack, panel)
    everything = expand(target["rawSql"], variable_values(demo_stack, dashboard, False), r)
    result = run(demo_stack, everything)
    check_columns(panel, target, *columns(demo_stack, everything))
    key = f"{dashboard['uid']}:{panel['title']}"
    if key in EXPECTED_EMPTY:
        assert not result.result_rows, f"{key} has rows now: take it off EXPECTED_EMPTY"
    else:
        assert result.result_rows, f"no rows for {key}:\n{everything}"
    # With one real value per variable (and a search text with a quote) it still runs.
    one = expand(target["rawSql"], variable_values(demo_stack, dashboard, True), r)
    run(demo_stack, one)
    check_columns(panel, target, *columns(demo_stack, one))


def test_time_filters_use_the_partition_and_sort_keys(demo_stack):  # noqa: F811
    """Every panel query bounds the time column its table is partitioned and sorted by, so it
    reads only the parts of its range; the expanded filter does prune parts on the engine."""
    bounded = re.compile(r"\$__timeFilter\((time|Timestamp|TimestampTime)\)"
                         r"|time >= \$__toTime - INTERVAL \d+ DAY AND time <= \$__toTime"
                         r"|Timestamp >= trace_start AND Timestamp <= trace_end")
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p.get("targets", []):
                if t["datasource"]["uid"] == "clickhouse":
                    for select in re.split(r"UNION ALL", t["rawSql"]):
                        assert bounded.search(select), f"{path.name}: {p['title']}: {select}"
    # The backfill spans three days; a one-hour range reads fewer parts than all of them.
    end = utc(demo_stack["demo_finished"] + 60)
    sql = expand("SELECT count() FROM api_calls WHERE $__timeFilter(time)", {},
                 Range(end - timedelta(hours=1), end, 60))
    plan = "\n".join(r[0] for r in run(demo_stack, "EXPLAIN indexes = 1 " + sql).result_rows)
    parts = re.findall(r"Parts: (\d+)/(\d+)", plan)
    assert any(int(read) < int(total) for read, total in parts), plan


# --- PromQL ------------------------------------------------------------------------------------

def prom_exprs():
    for path in DASHBOARDS:
        d = load(path)
        for p in panels(d):
            for t in p.get("targets", []):
                if t["datasource"]["uid"] == "prometheus":
                    yield d["uid"], p["id"], t["refId"], t["expr"]


def test_promql_is_accepted_by_prometheus_and_names_exported_series(demo_stack, tmp_path):  # noqa: F811
    exprs = list(prom_exprs())
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:{uid.replace('-', '_')}:panel{pid}{ref}",
         "expr": re.sub(r"\$\{?\w+\}?", ".*",
                        expr.replace("$__rate_interval", "5m").replace("$__interval", "1m"))}
        for uid, pid, ref, expr in exprs]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in check.stdout, check.stdout
    exported = set(re.findall(r"^# TYPE (\w+)", urllib.request.urlopen(demo_stack["metrics"])
                              .read().decode(), re.M))
    # Registered but not yet observed series have no TYPE line: take the names the metrics
    # module registers, and those docs/operations.md documents.
    documented = set(re.findall(r"`(logbook_\w+)", (ROOT / "docs" / "operations.md").read_text()))
    for source in (ROOT / "src").rglob("metrics*.rs"):
        documented |= set(re.findall(r'"(logbook_\w+)"', source.read_text()))
    for _, _, _, expr in exprs:
        for name in re.findall(r"\b(logbook_\w+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in exported | documented, f"{name}: not a series logbook exports"
    assert exported, "logbook's /metrics is empty"
