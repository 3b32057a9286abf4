"""What Grafana and the ClickHouse plugin (grafana-clickhouse-datasource 4.x) do to a panel's SQL
before ClickHouse sees it, in their order:

1. the plugin's frontend replaces `$__conditionalAll(condition, $var)` by `1=1` when the
   variable selects everything (`$__all`) or is empty, else by the condition
   (CHDatasource.applyConditionalAll);
2. Grafana replaces template variables; without an explicit format the plugin's formatter
   quotes multi-values as `'a','b'` and inserts a single value as is; `${var:sqlstring}` and
   `${var:singlequote}` are Grafana's own formatters;
3. the plugin's backend expands its macros (pkg/macros/macros.go): `$__timeFilter(c)` →
   `c >= toDateTime(FROM) AND c <= toDateTime(TO)`, `$__timeFilter_ms`, `$__dateFilter`,
   `$__dateTimeFilter`, `$__fromTime`, `$__toTime`, `$__fromTime_ms`, `$__toTime_ms`,
   `$__timeInterval(c)` → `toStartOfInterval(toDateTime(c), INTERVAL N second)`,
   `$__timeInterval_ms`, `$__interval_s` → N, `$__timeFrom(c)`, `$__timeTo(c)`.

A query that still holds a `$` token after the three steps fails: a macro this module does not
know would reach ClickHouse unexpanded."""

import re
from datetime import datetime, timezone

ALL = "$__all"


class Range:
    def __init__(self, start: datetime, end: datetime, interval_s: int):
        self.start, self.end, self.interval_s = start, end, interval_s


def _args(sql: str, open_paren: int):
    """The arguments of the call whose `(` is at `open_paren`, split at top-level commas, and
    the index after its `)` (the plugin's getMacroArgs)."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise ValueError(f"unbalanced macro call in {sql[open_paren:open_paren + 80]!r}")


def conditional_all(sql: str, values: dict) -> str:
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _args(sql, at + len(macro) - 1)
        assert len(args) == 2, f"$__conditionalAll takes 2 arguments: {args}"
        name = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1].strip())
        phrase = args[0]
        if name:
            value = values.get(name.group(0))
            text = ",".join(value) if isinstance(value, list) else str(value)
            if text in ("", ALL):
                phrase = "1=1"
        sql = sql[:at] + phrase + sql[end:]
    return sql


def _sqlstring(value):
    quote = lambda v: "'" + str(v).replace("'", "''") + "'"  # noqa: E731
    return ",".join(map(quote, value)) if isinstance(value, list) else quote(value)


def _singlequote(value):
    quote = lambda v: "'" + str(v).replace("'", "\\'") + "'"  # noqa: E731
    return ",".join(map(quote, value)) if isinstance(value, list) else quote(value)


FORMATS = {"sqlstring": _sqlstring, "singlequote": _singlequote,
           "raw": lambda v: ",".join(v) if isinstance(v, list) else str(v)}


def _plugin_format(value):
    return "'" + "','".join(value) + "'" if isinstance(value, list) else str(value)


def template(sql: str, values: dict) -> str:
    """Grafana's templateSrv.replace over `$var`, `${var}`, `${var:format}`, `[[var]]`;
    names it does not know (macros) are left alone."""
    pattern = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")

    def replace(m):
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        if name not in values:
            return m.group(0)
        value = values[name]
        return FORMATS[fmt](value) if fmt else _plugin_format(value)

    return pattern.sub(replace, sql)


def _date(t):
    return f"toDate('{t.strftime('%Y-%m-%d')}')"


def _dt(t):
    return f"toDateTime({int(t.timestamp())})"


def _dt64(t):
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


def macros(sql: str, r: Range) -> str:
    s, e, n = r.start, r.end, max(r.interval_s, 1)
    functions = {
        "timeFilter": lambda c: f"{c} >= {_dt(s)} AND {c} <= {_dt(e)}",
        "timeFilter_ms": lambda c: f"{c} >= {_dt64(s)} AND {c} <= {_dt64(e)}",
        "dateFilter": lambda c: f"{c} >= {_date(s)} AND {c} <= {_date(e)}",
        "dateTimeFilter": lambda d, t: (f"({d} >= {_date(s)} AND {d} <= {_date(e)}) AND "
                                        f"({t} >= {_dt(s)} AND {t} <= {_dt(e)})"),
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {n} second)",
        "timeInterval_ms": lambda c: (f"toStartOfInterval(toDateTime64({c}, 3), "
                                      f"INTERVAL {n * 1000} millisecond)"),
        "timeFrom": lambda c: f"{c} >= {_dt(s)}",
        "timeTo": lambda c: f"{c} <= {_dt(e)}",
    }
    functions["dt"] = functions["dateTimeFilter"]
    constants = {"fromTime": _dt(s), "toTime": _dt(e), "fromTime_ms": _dt64(s),
                 "toTime_ms": _dt64(e), "interval_s": str(n)}
    out, i = [], 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < i:
            continue
        name = m.group(1)
        out.append(sql[i:m.start()])
        if name in functions:
            assert sql[m.end():m.end() + 1] == "(", f"$__{name} needs arguments"
            args, end = _args(sql, m.end())
            out.append(functions[name](*[a.strip() for a in args]))
            i = end
        elif name in constants:
            out.append(constants[name])
            i = m.end()
        else:
            raise AssertionError(f"unknown macro $__{name}")
    out.append(sql[i:])
    return "".join(out)


def expand(sql: str, values: dict, r: Range) -> str:
    sql = macros(template(conditional_all(sql, values), values), r)
    left = re.findall(r"\$\{?\w+", sql)
    assert not left, f"unexpanded {left} in:\n{sql}"
    return sql


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
