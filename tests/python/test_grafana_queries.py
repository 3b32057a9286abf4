"""The expansion the dashboard tests apply (grafana_queries.py) matches the ClickHouse plugin's
documented examples (its pluginMacros.ts, macros_test.go and CHDatasource.test.ts)."""

from datetime import datetime, timezone

import pytest

from grafana_queries import ALL, Range, conditional_all, expand, macros, template

R = Range(datetime.fromtimestamp(1415792726, timezone.utc),
          datetime.fromtimestamp(1447328726, timezone.utc), 20)


@pytest.mark.parametrize("sql,want", [
    ("$__timeFilter(time)", "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"),
    ("$__timeFilter_ms(time)", "time >= fromUnixTimestamp64Milli(1415792726000) AND "
                               "time <= fromUnixTimestamp64Milli(1447328726000)"),
    ("$__dateFilter(date)", "date >= toDate('2014-11-12') AND date <= toDate('2015-11-12')"),
    ("$__fromTime", "toDateTime(1415792726)"),
    ("$__toTime", "toDateTime(1447328726)"),
    ("$__timeInterval(column)", "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"),
    ("$__timeInterval_ms(column)",
     "toStartOfInterval(toDateTime64(column, 3), INTERVAL 20000 millisecond)"),
    ("count() / $__interval_s", "count() / 20"),
])
def test_macros_expand_as_the_plugin_documents(sql, want):
    assert macros(sql, R) == want


def test_conditional_all_is_dropped_only_when_everything_is_selected():
    sql = "select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal);"
    assert conditional_all(sql, {"fieldVal": [ALL]}) == "select stuff from table where 1=1;"
    assert conditional_all(sql, {"fieldVal": ["a"]}) == \
        "select stuff from table where fieldVal in ($fieldVal);"
    assert conditional_all("$__conditionalAll(positionCaseInsensitive(b, ${s:sqlstring}) > 0, $s)",
                           {"s": ""}) == "1=1"


def test_variables_are_quoted_by_the_plugin_and_by_grafana_formats():
    values = {"bot": ["a", "b"], "n": "13", "s": "it's"}
    assert template("bot IN ($bot) AND x >= $n", values) == "bot IN ('a','b') AND x >= 13"
    assert template("p(b, ${s:sqlstring})", values) == "p(b, 'it''s')"
    assert template("$__timeFilter(time) AND ${bot:singlequote}", values) == \
        "$__timeFilter(time) AND 'a','b'"


def test_an_unknown_macro_or_variable_is_an_error():
    with pytest.raises(AssertionError):
        expand("SELECT $__unknown(x)", {}, R)
    with pytest.raises(AssertionError):
        expand("SELECT $missing", {}, R)
