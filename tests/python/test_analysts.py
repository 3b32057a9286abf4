"""Every SQL block of docs/analysts.md runs on the real engine against the demo's data and
answers: it returns rows, with the parameters an analyst would pass."""

import re

import pytest

from demo_stack import demo_stack  # noqa: F401 (fixture)
from logbook_stack import ROOT

DOC = ROOT / "docs" / "analysts.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def parameters(stack):
    one = lambda sql: stack["ch"].query(sql).result_rows[0][0]  # noqa: E731
    return {
        "integration": "Xero",
        "bot": one("SELECT source FROM errors WHERE kind = 'api_calls' GROUP BY source "
                   "ORDER BY count() DESC LIMIT 1"),
        "word": "error",
        "application": one("SELECT application FROM api_calls LIMIT 1"),
        "min_severity": 13,
        "text": "worker",
        "trace_id": one("SELECT trace_id FROM integration_sync_runs WHERE trace_id != '' "
                        "UNION ALL SELECT '' LIMIT 1"),
    }


def test_the_document_has_the_reference_questions():
    assert len(QUERIES) >= 20


@pytest.mark.parametrize("n", range(len(QUERIES)))
def test_analyst_query_answers_on_the_demo_data(demo_stack, n):  # noqa: F811
    sql = QUERIES[n].strip().rstrip(";")
    wanted = set(re.findall(r"\{(\w+):\w+\}", sql))
    given = {k: v for k, v in parameters(demo_stack).items() if k in wanted}
    assert set(given) == wanted, f"no test value for {wanted - set(given)}"
    rows = demo_stack["ch"].query(sql, parameters=given).result_rows
    assert rows, f"no rows for:\n{sql}\nwith {given}"
