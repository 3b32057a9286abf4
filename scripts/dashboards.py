#!/usr/bin/env python3
"""Generates the Grafana dashboards in dashboards/ from the data dictionary.

    scripts/dashboards.py            write dashboards/*.json
    scripts/dashboards.py --check    exit 1 if the committed files differ from what this generates

What a log kind already says (its columns, which of them are filters, their allowed values,
its searchable columns) is read from docs/schema.md, which `logbook schema-docs` renders from
the kind definitions (and a Rust test keeps current): variables, filters, search boxes and
log tables follow the kinds. What only a dashboard can say (which aggregate answers which
question of the reference tabs) is written below, once per panel.

Datasource uids are fixed and provisioned by config/grafana/provisioning/datasources/:
`clickhouse` (grafana-clickhouse-datasource, default database `logbook`), `prometheus`,
`alertmanager`. Tables are named without database: the datasource's default database applies.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_MD = ROOT / "docs" / "schema.md"
OUT = ROOT / "dashboards"

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39
# sqlds result formats (the plugin's `format` field).
TIME_SERIES, TABLE, LOGS, TRACE = 0, 1, 2, 3
TRACE_DASHBOARD = "logbook-trace"
# The id of the trace dashboard's logs panel, for links that open it alone.
TRACE_LOGS_PANEL = 2


# ---------------------------------------------------------------------------------------------
# The data dictionary
# ---------------------------------------------------------------------------------------------

class Kind:
    """A table as docs/schema.md describes it."""

    def __init__(self, name):
        self.name = name
        self.columns = {}  # name -> type
        self.one_of = {}  # name -> allowed values
        self.filters = []
        self.search = []
        self.order_by = []

    def enum(self, column):
        return self.one_of.get(column)


def read_dictionary(path=SCHEMA_MD):
    kinds, current = {}, None
    for line in path.read_text().splitlines():
        if m := re.match(r"^### `(\w+)`", line):
            current = kinds.setdefault(m.group(1), Kind(m.group(1)))
        elif line == "## Columns every log kind shares":
            current = kinds.setdefault("", Kind(""))
        elif current is None:
            continue
        elif m := re.match(r"^\| `(\w+)` \| `([^`]+)` \|", line):
            current.columns[m.group(1)] = m.group(2)
            if m2 := re.search(r"One of: ([^|.]+)\.(?: Formerly: [^|]+\.)? \|$", line):
                current.one_of[m.group(1)] = [v.strip() for v in m2.group(1).split(",")]
        elif m := re.match(r"^Filterable: (.+)\. Example:", line):
            current.filters = [c.strip() for c in m.group(1).split(",")]
        elif m := re.match(r"^- Skip indexes: (.+)$", line):
            current.search = re.findall(r"`(\w+)` \(tokenbf_v1", m.group(1))
        elif m := re.match(r"^- Engine: .*sorted by `\(?([^`)]*)\)?`", line):
            current.order_by = [c.strip() for c in m.group(1).split(",")]
    common = kinds.pop("", None)
    for kind in kinds.values():
        if kind.filters and common is not None:
            # A kind's table starts with the shared columns ("Columns every log kind shares").
            kind.columns = {**common.columns, **kind.columns}
    return kinds


# ---------------------------------------------------------------------------------------------
# Panels
# ---------------------------------------------------------------------------------------------

def sql(raw, fmt=TABLE, ref="A"):
    return {"refId": ref, "datasource": CLICKHOUSE, "editorType": "sql", "format": fmt,
            "rawSql": raw.strip()}


def prom(expr, legend, ref="A"):
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend,
            "range": True}


def panel(kind, title, targets, w=12, h=8, description="", unit=None, options=None,
          overrides=(), custom=None, thresholds=None, time_from=None, mappings=None,
          links=()):
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if custom:
        defaults["custom"] = custom
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    if mappings:
        defaults["mappings"] = mappings
    if links:
        defaults["links"] = list(links)
    p = {"type": kind, "title": title, "description": description,
         "datasource": targets[0]["datasource"], "gridPos": {"w": w, "h": h},
         "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
         "options": options or {}}
    if time_from:
        p["timeFrom"] = time_from
    return p


def timeseries(title, targets, stack=False, bars=False, **kw):
    custom = {"drawStyle": "bars" if bars else "line", "fillOpacity": 60 if bars else 10,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    custom.update(kw.pop("custom", {}))
    return panel("timeseries", title, targets, custom=custom,
                 options={"legend": {"displayMode": "table", "placement": "right",
                                     "calcs": ["sum"] if bars else ["lastNotNull", "max"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}}, **kw)


def table(title, target, links_on=(), overrides=(), **kw):
    overrides = list(overrides) + [{"matcher": {"id": "byName", "options": column},
                                    "properties": [{"id": "links", "value": links}]}
                                   for column, links in links_on]
    return panel("table", title, [target], overrides=overrides,
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
                 **kw)


def stat(title, target, **kw):
    return panel("stat", title, [target], options={
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background", "graphMode": "area", "textMode": "auto"}, **kw)


def barchart(title, target, **kw):
    return panel("barchart", title, [target], options={
        "orientation": "horizontal", "showValue": "auto", "xTickLabelRotation": 0,
        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"}}, **kw)


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}


def trace_links(column="trace_id"):
    """Data links from a row's trace id to the trace view and to the trace's logs."""
    value = "${__value.raw}"
    return (column, [
        {"title": "Trace view", "url": f"/d/{TRACE_DASHBOARD}/trace?var-trace_id={value}&${{__url_time_range}}"},
        {"title": "Logs of this trace",
         "url": f"/d/{TRACE_DASHBOARD}/trace?var-trace_id={value}&viewPanel={TRACE_LOGS_PANEL}&${{__url_time_range}}"},
    ])


# ---------------------------------------------------------------------------------------------
# Variables and filters, from the kinds
# ---------------------------------------------------------------------------------------------

ALL = {"selected": True, "text": ["All"], "value": ["$__all"]}


def query_var(name, label, kind_table, column):
    query = (f"SELECT DISTINCT {column} FROM {kind_table} WHERE $__timeFilter(time) "
             f"ORDER BY {column}")
    return {"type": "query", "name": name, "label": label, "datasource": CLICKHOUSE,
            "query": query, "definition": query, "refresh": 2, "multi": True,
            "includeAll": True, "current": ALL, "options": [], "sort": 1, "hide": 0}


def custom_var(name, label, values):
    return {"type": "custom", "name": name, "label": label, "query": ",".join(values),
            "multi": True, "includeAll": True, "current": ALL, "hide": 0,
            "options": [{"selected": False, "text": v, "value": v} for v in values]}


def text_var(name, label):
    return {"type": "textbox", "name": name, "label": label, "query": "",
            "current": {"selected": False, "text": "", "value": ""}, "hide": 0}


def filter_var(kinds, table_name, column, name=None, label=None):
    """A variable over one of a kind's filter columns: its allowed values when the kind lists
    them, else the distinct values in the time range."""
    kind = kinds[table_name]
    assert column in kind.filters or column in ("tenant", "service"), (table_name, column)
    name = name or column
    label = label or column.replace("_", " ")
    values = kind.enum(column)
    return custom_var(name, label, values) if values else query_var(name, label, table_name, column)


def where(kind, variables, search=None, extra=()):
    """The WHERE clause of a panel over `kind`: the time filter on `time` (the sort key's last
    column, and the partition key), one conditional filter per dashboard variable bound to one
    of the kind's columns, and the search box over the kind's searchable columns."""
    parts = ["$__timeFilter(time)"]
    for var, column in variables:
        parts.append(f"$__conditionalAll({column} IN (${var}), ${var})")
    if search and kind.search:
        hits = " OR ".join(f"positionCaseInsensitive({c}, ${{{search}:sqlstring}}) > 0"
                           for c in kind.search)
        parts.append(f"$__conditionalAll(({hits}), ${search})")
    parts.extend(extra)
    return "WHERE " + "\n  AND ".join(parts)


def bound(kind, variables):
    """The dashboard's (variable, column) pairs that apply to this kind."""
    return [(v, c) for v, c in variables if c in kind.columns]


def log_table(kinds, table_name, title, columns, variables, search="search", extra=(),
              limit=500, **kw):
    kind = kinds[table_name]
    for column in columns:
        assert column in kind.columns, (table_name, column)
    select = ", ".join(["time"] + columns + ["trace_id"])
    q = (f"SELECT {select}\nFROM {table_name}\n{where(kind, bound(kind, variables), search, extra)}\n"
         f"ORDER BY time DESC\nLIMIT {limit}")
    return table(title, sql(q), links_on=[trace_links()], **kw)


def counts_over_time(kinds, table_name, title, series, variables, extra=(), **kw):
    kind = kinds[table_name]
    q = (f"SELECT $__timeInterval(time) AS time, {series} AS series, count() AS rows\n"
         f"FROM {table_name}\n{where(kind, bound(kind, variables), extra=extra)}\n"
         f"GROUP BY time, series\nORDER BY time")
    return timeseries(title, [sql(q, TIME_SERIES)], bars=True, stack=True, **kw)


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------

def integrations(k):
    variables = [("integration", "integration"), ("tenant", "tenant")]
    runs = k["integration_sync_runs"]
    # The last 24 hours' runs per integration; the status itself comes from logbook's
    # logbook_integration_status gauge (query::integrations: one rule for API and metrics).
    summary = """
SELECT integration,
       countIf(status = 'error') AS errors,
       countIf(status IN ('completed', 'error')) AS finished,
       errors / greatest(finished, 1) AS error_rate,
       argMaxIf(status, time, status IN ('completed', 'error')) AS last_outcome,
       max(time) AS last_run
FROM integration_sync_runs
WHERE time >= $__toTime - INTERVAL 1 DAY AND time <= $__toTime
  AND $__conditionalAll(integration IN ($integration), $integration)
  AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY integration
ORDER BY error_rate DESC, integration"""
    state_colors = {"type": "value", "options": {
        "active": {"color": "green", "index": 0, "text": "Active"},
        "error": {"color": "red", "index": 1, "text": "Error"},
        "disabled": {"color": "gray", "index": 2, "text": "Disabled"}}}
    status_now = {**prom('max by (integration, status) (logbook_integration_status{integration=~"$integration"}) == 1',
                         "{{integration}}"), "instant": True, "range": False, "format": "table"}
    next_run = {**prom('max by (integration) (logbook_integration_next_run_timestamp_seconds{integration=~"$integration"}) * 1000',
                       "{{integration}}"), "instant": True, "range": False, "format": "table"}
    rate = """
SELECT $__timeInterval(time) AS time, integration,
       countIf(status = 'error') / count() AS error_rate
FROM integration_sync_runs
WHERE $__timeFilter(time) AND status IN ('completed', 'error')
  AND $__conditionalAll(integration IN ($integration), $integration)
  AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY time, integration
ORDER BY time"""
    rate_24h = """
SELECT integration, countIf(status = 'error') / count() AS error_rate
FROM integration_sync_runs
WHERE time >= $__toTime - INTERVAL 1 DAY AND time <= $__toTime AND status IN ('completed', 'error')
  AND $__conditionalAll(integration IN ($integration), $integration)
  AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY integration
ORDER BY error_rate DESC"""
    line = [{"color": "green", "value": None}, {"color": "red", "value": 0.3}]
    failed_runs = log_table(k, "integration_sync_runs", "Failed sync runs",
                            ["integration", "integration_tenant", "entity", "found", "failed",
                             "error_message", "log"], variables,
                            extra=["status = 'error'"], w=24)
    panels = [
        row("Status"),
        panel("table", "Integration status", [status_now], w=6, h=8,
              description="Disabled: its latest integration_states row disables it. Error: its "
                          "last finished run failed, or no run completed within twice its sync "
                          "interval. Active otherwise (logbook_integration_status).",
              overrides=[{"matcher": {"id": "byName", "options": "status"}, "properties": [
                  {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                  {"id": "mappings", "value": [state_colors]}]}],
              options={"showHeader": True}),
        panel("table", "Next sync run due", [next_run], w=6, h=8, unit="dateTimeAsIso",
              options={"showHeader": True}),
        table("Sync runs, last 24 hours", sql(summary), w=12, h=8,
              overrides=[{"matcher": {"id": "byName", "options": "error_rate"},
                          "properties": [{"id": "unit", "value": "percentunit"}]}]),
        barchart("Error rate per integration, last 24 hours (alert at 30%)", sql(rate_24h),
                 unit="percentunit", thresholds=line, w=12, h=8,
                 custom={"thresholdsStyle": {"mode": "line+area"}}),
        row("Sync runs"),
        counts_over_time(k, "integration_sync_runs", "Sync runs by lifecycle status", "status",
                         variables, w=12),
        timeseries("Error rate per integration against the 30% line",
                   [sql(rate, TIME_SERIES)], unit="percentunit", thresholds=line, w=12,
                   custom={"thresholdsStyle": {"mode": "line"}}),
        failed_runs,
        log_table(k, "integration_states", "Enabled, disabled and reconfigured",
                  ["integration", "change", "enabled", "sync_interval_s", "actor"], variables,
                  w=12),
        row("Failed entities"),
        log_table(k, "integration_errors", "Failed entities with messages",
                  ["integration", "entity_type", "entity_id", "failure_type", "message"],
                  variables, w=24),
        row("Requests"),
        counts_over_time(k, "integration_requests", "Inbound and outbound requests",
                         "concat(direction, ' ', status)", variables + [("direction", "direction")],
                         w=24, h=7),
        log_table(k, "integration_requests", "Requests with payloads",
                  ["direction", "integration", "request_type", "method", "url", "status_code",
                   "status", "payload", "response", "error_message"],
                  variables + [("direction", "direction")], w=24, h=10),
    ]
    return dashboard("logbook-integrations", "Integrations", panels, [
        filter_var(k, "integration_sync_runs", "integration"),
        filter_var(k, "integration_sync_runs", "tenant"),
        filter_var(k, "integration_requests", "direction"),
        text_var("search", "search"),
    ], tags=["integrations"], time_from="now-24h")


def api_calls(k):
    calls = k["api_calls"]
    variables = [("outcome", "outcome"), ("method", "method"), ("status_code", "status_code"),
                 ("bot", "bot"), ("application", "application"), ("tenant", "tenant")]
    over_time = counts_over_time(k, "api_calls", "Calls by response status", "outcome",
                                 variables, w=12)
    codes_30d = """
SELECT $__timeInterval(time) AS time, code, count() AS errors
FROM errors
WHERE $__timeFilter(time) AND kind = 'api_calls'
  AND $__conditionalAll(source IN ($bot), $bot)
  AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY time, code
ORDER BY time"""
    top_bots = f"""
SELECT bot, count() AS failed_calls, uniqExact(status_code) AS codes, max(time) AS last_error
FROM api_calls
{where(calls, bound(calls, [v for v in variables if v[0] != 'outcome']), extra=["outcome = 'error'"])}
GROUP BY bot
ORDER BY failed_calls DESC
LIMIT 10"""
    panels = [
        over_time,
        timeseries("Error codes, last 30 days", [sql(codes_30d, TIME_SERIES)], bars=True,
                   stack=True, time_from="30d", w=12,
                   description="From the errors table, which keeps API call errors 30 days "
                               "(the calls themselves are kept 7)."),
        table("Top failing bots", sql(top_bots), w=8, h=9),
        log_table(k, "api_calls", "Calls",
                  ["bot", "application", "method", "status_code", "outcome", "duration_ms",
                   "end_user", "source", "url", "request_body", "response_body",
                   "error_message"], variables, w=16, h=9),
    ]
    return dashboard("logbook-api-calls", "API call logs", panels, [
        filter_var(k, "api_calls", "outcome", label="status"),
        filter_var(k, "api_calls", "method", label="request type"),
        filter_var(k, "api_calls", "status_code", label="response code"),
        filter_var(k, "api_calls", "bot"),
        filter_var(k, "api_calls", "application"),
        filter_var(k, "api_calls", "tenant"),
        text_var("search", "search"),
    ], tags=["api"], time_from="now-7d")


def backend_services(k):
    variables = [("tenant", "tenant")]
    mail_where = "direction = '{}'"
    monitoring = k["monitoring_events"]
    severity = f"""
SELECT $__timeInterval(time) AS time, severity AS series, count() AS rows
FROM monitoring_events
{where(monitoring, bound(monitoring, variables), extra=["severity_number >= $min_severity"])}
GROUP BY time, series
ORDER BY time"""
    attempts = """
SELECT attempt, countIf(status = 'error') AS failed, countIf(status = 'sent') AS sent
FROM mail_messages
WHERE $__timeFilter(time) AND direction = 'outbound'
  AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY attempt
ORDER BY attempt"""
    bulk = """
SELECT campaign_id, sum(recipients_total) AS recipients, sum(sent) AS sent,
       sum(failed) AS failed, max(time) AS last_sent
FROM bulk_mail_campaigns
WHERE $__timeFilter(time) AND $__conditionalAll(tenant IN ($tenant), $tenant)
GROUP BY campaign_id
ORDER BY failed DESC, campaign_id"""
    panels = [
        row("Integrator runs"),
        counts_over_time(k, "integration_sync_runs", "Integrator runs by status", "status",
                         variables, w=8),
        log_table(k, "integration_sync_runs", "Integrator log",
                  ["integration", "integration_tenant", "entity", "status", "mappings_found",
                   "found", "created", "updated", "failed", "deactivated", "log",
                   "error_message"], variables, w=16),
        row("Task scheduler"),
        counts_over_time(k, "task_scheduler_runs", "Scheduler runs (forced or scheduled)",
                         "if(forced, 'forced', 'scheduled')", variables, w=8),
        log_table(k, "task_scheduler_runs", "Task scheduler log",
                  ["forced", "tasks_queued", "tasks", "log"], variables, w=16),
        row("Incoming mail"),
        counts_over_time(k, "mail_messages", "Incoming mail by status", "status", variables,
                         extra=[mail_where.format("inbound")], w=8),
        log_table(k, "mail_messages", "Incoming log",
                  ["mailbox", "from", "subject", "status", "attempt", "message_id",
                   "error_message"], variables, extra=[mail_where.format("inbound")], w=16),
        row("Outgoing mail"),
        table("Outgoing attempts", sql(attempts), w=8,
              description="Each mail is tried up to three times; a mail failed at attempt 3 "
                          "is given up until an agent resends it."),
        log_table(k, "mail_messages", "Outgoing log",
                  ["mailbox", "to", "subject", "status", "attempt", "message_id",
                   "campaign_id", "error_message"], variables,
                  extra=[mail_where.format("outbound")], w=16),
        row("Event log"),
        log_table(k, "event_log", "Events, notifications and webhooks",
                  ["event_type", "description", "creation_count", "notification_ids",
                   "webhook_ids", "log"], variables, w=24),
        row("Automations"),
        counts_over_time(k, "automation_runs", "Automations by status", "status", variables,
                         w=8),
        log_table(k, "automation_runs", "Automation log",
                  ["action", "status", "workflow_id", "step_id", "runbook_id", "ticket_ref",
                   "error_message"], variables, w=16),
        row("Schedule occurrences"),
        log_table(k, "schedule_occurrences", "Schedule occurrence log",
                  ["entity_type", "description", "source_id", "created_id", "status",
                   "error_message"], variables, w=24),
        row("Bulk mail"),
        table("Campaigns", sql(bulk), w=24, h=7),
        row("Monitoring events"),
        timeseries("Monitoring events by severity (at or above the minimum)",
                   [sql(severity, TIME_SERIES)], bars=True, stack=True, w=8),
        log_table(k, "monitoring_events", "Monitoring events",
                  ["severity", "log_type", "message", "related_log_id"], variables,
                  extra=["severity_number >= $min_severity"], w=16),
        row("Integration errors"),
        log_table(k, "integration_errors", "Integration errors",
                  ["integration", "entity_type", "entity_id", "failure_type", "message"],
                  variables, w=24),
    ]
    severities = k["monitoring_events"].enum("severity")
    numbers = {"trace": 1, "debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
    min_severity = {"type": "custom", "name": "min_severity", "label": "minimum severity",
                    "query": ",".join(f"{s} : {numbers[s]}" for s in severities),
                    "multi": False, "includeAll": False, "hide": 0,
                    "current": {"selected": True, "text": "warning", "value": "13"},
                    "options": [{"selected": s == "warning", "text": s,
                                 "value": str(numbers[s])} for s in severities]}
    return dashboard("logbook-backend-services", "Backend services", panels, [
        filter_var(k, "monitoring_events", "tenant"),
        min_severity,
        text_var("search", "search"),
    ], tags=["backend"], time_from="now-24h")


def audit(k):
    activity = k["audit_activity"]
    access = k["access_logs"]
    act_vars = [("user", "actor_name"), ("category", "category"), ("tenant", "tenant")]
    acc_vars = [("user", "user_name"), ("access_category", "category"), ("brand", "brand"),
                ("tenant", "tenant")]
    by_user = f"""
SELECT actor_name, category, count() AS changes
FROM audit_activity
{where(activity, act_vars)}
GROUP BY actor_name, category
ORDER BY changes DESC
LIMIT 50"""
    failed_by_ip = f"""
SELECT ip, count() AS failed_logins, uniqExact(user_name) AS users, max(time) AS last_attempt
FROM access_logs
{where(access, [v for v in acc_vars if v[0] != 'access_category'], extra=["category = 'login_failed'"])}
GROUP BY ip
ORDER BY failed_logins DESC
LIMIT 20"""
    panels = [
        row("Activity"),
        counts_over_time(k, "audit_activity", "Changes by category", "category", act_vars,
                         w=12),
        table("Activity by user and category", sql(by_user), w=12),
        log_table(k, "audit_activity", "Who changed what",
                  ["actor_name", "actor_email", "category", "event_type", "summary", "before",
                   "after"], act_vars, w=24),
        row("Access"),
        counts_over_time(k, "access_logs", "Logins, logouts and impersonations", "category",
                         acc_vars, w=12),
        table("Failed logins by IP", sql(failed_by_ip), w=12),
        log_table(k, "access_logs", "Access log",
                  ["user_name", "user_email", "category", "portal", "ip", "brand",
                   "login_source", "path"], acc_vars, w=24),
        row("Webhook failures"),
        log_table(k, "webhook_failures", "Webhook failures",
                  ["webhook_name", "webhook_id", "url", "status_code", "attempt",
                   "error_message"], [("tenant", "tenant")], w=24, h=7),
    ]
    return dashboard("logbook-audit", "Audit and access", panels, [
        query_var("user", "user", "access_logs", "user_name"),
        filter_var(k, "audit_activity", "category"),
        filter_var(k, "access_logs", "category", name="access_category",
                   label="access category"),
        filter_var(k, "access_logs", "brand"),
        filter_var(k, "access_logs", "tenant"),
        text_var("search", "search"),
    ], tags=["audit"], time_from="now-7d")


def server_logs(k):
    logs = k["server_logs"]
    variables = [("level", "level"), ("category", "category"), ("logger", "logger"),
                 ("tenant", "tenant")]
    lines = f"""
SELECT time, level, category, logger, message, fields, trace_id
FROM server_logs
{where(logs, variables, "search")}
ORDER BY time DESC
LIMIT 1000"""
    panels = [
        counts_over_time(k, "server_logs", "Lines by level", "level", variables, w=12),
        counts_over_time(k, "server_logs", "Lines by category", "category", variables, w=12),
        panel("logs", "Server log", [sql(lines, LOGS)], w=24, h=14,
              options={"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                       "enableLogDetails": True, "dedupStrategy": "none"}),
    ]
    return dashboard("logbook-server-logs", "Server logs", panels, [
        filter_var(k, "server_logs", "level"),
        filter_var(k, "server_logs", "category"),
        filter_var(k, "server_logs", "logger"),
        filter_var(k, "server_logs", "tenant"),
        text_var("search", "search"),
    ], tags=["logs"], time_from="now-6h")


def trace(k):
    """The trace view every data link leads to: the plugin's trace panel over otel_traces,
    the trace's log records, and the typed rows it produced."""
    spans = """
WITH '${trace_id}' AS trace,
     (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = trace) AS trace_start,
     (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = trace) AS trace_end
SELECT TraceId AS traceID, SpanId AS spanID, ParentSpanId AS parentSpanID,
       ServiceName AS serviceName, SpanName AS operationName,
       multiply(toUnixTimestamp64Nano(Timestamp), 0.000001) AS startTime,
       multiply(Duration, 0.000001) AS duration,
       arrayMap(key -> map('key', key, 'value', SpanAttributes[key]), mapKeys(SpanAttributes)) AS tags,
       arrayMap(key -> map('key', key, 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes)) AS serviceTags,
       if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) AS statusCode,
       SpanKind AS kind, StatusMessage AS statusMessage
FROM otel_traces
WHERE TraceId = trace AND Timestamp >= trace_start AND Timestamp <= trace_end
ORDER BY startTime"""
    log_lines = """
SELECT Timestamp AS timestamp, Body AS body, SeverityText AS level, ServiceName AS service,
       EventName AS event, TraceId AS trace_id, SpanId AS span_id, LogAttributes AS labels
FROM otel_logs
WHERE TraceId = '${trace_id}' AND $__timeFilter(TimestampTime)
ORDER BY Timestamp"""
    typed = "\nUNION ALL\n".join(
        f"SELECT time, '{name}' AS kind, toString(id) AS id, span_id FROM {name} "
        f"WHERE trace_id = '${{trace_id}}' AND $__timeFilter(time)"
        for name, kind in k.items() if kind.filters)
    recent = """
SELECT TraceId AS trace_id, min(Timestamp) AS started, any(ServiceName) AS service,
       anyIf(SpanName, ParentSpanId = '') AS root_span, count() AS spans,
       countIf(StatusCode = 'Error') AS errors, max(Duration) / 1e6 AS longest_ms
FROM otel_traces
WHERE $__timeFilter(Timestamp) AND $__conditionalAll(ServiceName IN ($service), $service)
GROUP BY TraceId
ORDER BY started DESC
LIMIT 100"""
    logs_panel = panel("logs", "Logs of the trace", [sql(log_lines, LOGS)], w=24, h=8,
                       options={"showTime": True, "wrapLogMessage": True,
                                "enableLogDetails": True, "sortOrder": "Ascending"})
    panels = [
        panel("traces", "Trace ${trace_id}", [sql(spans, TRACE)], w=24, h=14),
        logs_panel,
        table("Typed records of the trace", sql(typed + "\nORDER BY time"), w=24, h=6),
        table("Recent traces", sql(recent), w=24, h=10, links_on=[trace_links()]),
    ]
    service_q = ("SELECT DISTINCT ServiceName FROM otel_traces WHERE $__timeFilter(Timestamp) "
                 "ORDER BY ServiceName")
    assert panels.index(logs_panel) + 1 == TRACE_LOGS_PANEL
    return dashboard(TRACE_DASHBOARD, "Trace", panels, [
        text_var("trace_id", "trace id"),
        {**query_var("service", "service", "otel_traces", "ServiceName"),
         "query": service_q, "definition": service_q},
    ], tags=["traces"], time_from="now-24h")


def logbook_itself(k):
    rate = "$__rate_interval"
    panels = [
        row("Ingest"),
        timeseries("Records received and accepted per second", [
            prom(f"sum by (signal) (rate(logbook_received_records_total[{rate}]))",
                 "received {{signal}}"),
            prom(f"sum by (signal) (rate(logbook_accepted_records_total[{rate}]))",
                 "accepted {{signal}}", "B")], unit="reqps", w=12),
        timeseries("Refused per second, by reason", [
            prom(f"sum by (reason) (rate(logbook_refused_records_total[{rate}]))",
                 "{{reason}}")], unit="reqps", w=12),
        timeseries("Rows stored per second, by table", [
            prom(f"sum by (table) (rate(logbook_rows_inserted_total[{rate}]))", "{{table}}")],
            unit="rowsps", w=12),
        timeseries("Records rejected for a typed table", [
            prom(f"sum by (table, column) (rate(logbook_typed_rejected_records_total[{rate}]))",
                 "{{table}}.{{column}}")], unit="reqps", w=12),
        row("Queue"),
        timeseries("Queue", [prom("sum(logbook_queue_bytes)", "bytes queued")], unit="bytes",
                   w=8),
        timeseries("Queued records", [prom("sum(logbook_queue_records)", "records")], w=8),
        timeseries("Oldest queued record", [
            prom("max(logbook_queue_oldest_age_seconds)", "age")], unit="s", w=8),
        row("ClickHouse"),
        stat("ClickHouse reachable", prom("min(logbook_clickhouse_up)", "up"), w=4,
             thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
             mappings=[{"type": "value", "options": {"0": {"text": "down"},
                                                     "1": {"text": "up"}}}]),
        timeseries("Insert latency (p50, p99)", [
            prom("histogram_quantile(0.5, sum by (le) "
                 f"(rate(logbook_clickhouse_insert_duration_seconds_bucket[{rate}])))", "p50"),
            prom("histogram_quantile(0.99, sum by (le) "
                 f"(rate(logbook_clickhouse_insert_duration_seconds_bucket[{rate}])))", "p99",
                 "B")], unit="s", w=10),
        timeseries("Insert errors per second", [
            prom(f"sum by (table, error_type) (rate(logbook_clickhouse_insert_errors_total[{rate}]))",
                 "{{table}} {{error_type}}")], unit="reqps", w=10),
        timeseries("Dead-lettered batches", [
            prom(f"sum by (table) (increase(logbook_dead_letter_batches_total[{rate}]))",
                 "{{table}}")], bars=True, w=12),
        timeseries("Rows per batch (p50)", [
            prom(f"histogram_quantile(0.5, sum by (le) (rate(logbook_batch_rows_bucket[{rate}])))",
                 "p50")], w=12),
        row("Redaction and retention"),
        timeseries("Values redacted and truncated per second", [
            prom(f"rate(logbook_redacted_values_total[{rate}])", "redacted"),
            prom(f"rate(logbook_truncated_values_total[{rate}])", "truncated", "B")],
            unit="reqps", w=12),
        timeseries("server_logs size cap: bytes dropped", [
            prom(f"increase(logbook_retention_dropped_bytes_total[{rate}])", "dropped")],
            unit="bytes", w=12),
    ]
    return dashboard("logbook-self", "logbook", panels, [], tags=["logbook"],
                     time_from="now-3h")


def dashboard(uid, title, panels, variables, tags, time_from):
    links = [{"type": "dashboards", "title": "logbook", "tags": ["logbook"], "asDropdown": True,
              "includeVars": False, "keepTime": True, "icon": "external link"}]
    return {
        "uid": uid, "title": title, "tags": ["logbook"] + tags, "timezone": "utc",
        "editable": True, "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "refresh": "1m", "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []}, "links": links,
        "templating": {"list": variables}, "panels": place(panels),
    }


def place(panels):
    """Numbers the panels and lays them out left to right, top to bottom."""
    x = y = line = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        grid = p["gridPos"]
        if p["type"] == "row":
            grid.update(w=24, h=1)
        if x + grid["w"] > 24 or p["type"] == "row":
            x, y = 0, y + line
            line = 0
        grid.update(x=x, y=y)
        x += grid["w"]
        line = max(line, grid["h"])
        if p["type"] == "row":
            x, y, line = 0, y + 1, 0
    return panels


DASHBOARDS = {
    "integrations.json": integrations,
    "api-calls.json": api_calls,
    "backend-services.json": backend_services,
    "audit.json": audit,
    "server-logs.json": server_logs,
    "trace.json": trace,
    "logbook.json": logbook_itself,
}


def render(kinds=None):
    kinds = kinds or read_dictionary()
    return {name: json.dumps(build(kinds), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv):
    rendered = render()
    if argv[1:] == ["--check"]:
        stale = [n for n, text in rendered.items()
                 if not (OUT / n).exists() or (OUT / n).read_text() != text]
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in rendered)
        if stale or extra:
            print(f"dashboards/ is out of date ({', '.join(stale + extra)}): "
                  "run scripts/dashboards.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(rendered)} dashboards to {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
