"""schemathesis against a running `logbook serve` (the `stack` fixture): it reads
/api/openapi.json with an owner token, generates requests for every operation from the document
(every kind's filters), and checks that no answer is a server error and every answer matches
the document (status code, content type, body schema). The detail and log-file operations get
real ids and names (a row of each kind, a rotated log file), so their 200 answers are checked
too, not only their 404s. Needs the logbook binary: `cargo build`, or LOGBOOK_BIN."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_count
from logbook_stack import demo_rows_of_every_kind, owner_token

DATABASE = "schemathesis_test"
CONFIG_EXTRA = ('[log.file]\npath = "{tmp}/logs/logbook.log"\n'
                "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Examples per operation in the fuzzing phase (41 operations): with the coverage phase, about
# two minutes on 2 cores.
MAX_EXAMPLES = 15
ROTATED = "logbook.log.20260101T000000.000.gz"


def get(base, token, path):
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def api(stack):
    base, ch = stack["api"], stack["ch"]
    token = owner_token(stack, "schemathesis")
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            break
        except OSError:
            assert time.time() < deadline, (stack["tmp"] / "stderr.log").read_text()
            time.sleep(0.1)
    # Rows of every kind (the demo's first events cycle through them all), so list answers
    # have rows whose schema is checked and each detail operation has a row to return.
    demo_rows_of_every_kind(stack)
    kinds = [k["name"] for k in get(base, token, "/api/v1/kinds")]
    ids = {}
    for kind in kinds:
        assert wait_count(ch, f"SELECT count() FROM `{kind}`", 1) >= 1, kind
        ids[kind] = ch.query(f"SELECT toString(id) FROM `{kind}` ORDER BY time DESC LIMIT 1"
                             ).result_rows[0][0]
    (stack["tmp"] / "logs" / ROTATED).write_text("an older day's log\n")
    return base, token, ids


def test_openapi_document_needs_a_token(api):
    base, _, _ = api
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{base}/api/openapi.json", timeout=5)
    assert error.value.code == 401


def config_file(path, ids):
    """schemathesis.toml: the real id of a row of each kind for its detail operation, and the
    rotated log file for the log-file operations."""
    lines = ["[warnings]", 'fail-on = ["missing_test_data"]', ""]
    for kind, row_id in ids.items():
        lines += ["[[operations]]", f'include-operation-id = "get_{kind}"',
                  f'parameters = {{ id = "{row_id}" }}', ""]
    for operation in ["download_log_file", "delete_log_file"]:
        lines += ["[[operations]]", f'include-operation-id = "{operation}"',
                  f'parameters = {{ name = "{ROTATED}" }}', ""]
    path.write_text("\n".join(lines))


def test_schemathesis_finds_no_failures(api, stack):
    base, token, ids = api
    config = stack["tmp"] / "schemathesis.toml"
    config_file(config, ids)
    run = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{base}/api/openapi.json",
         "--header", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--phases", "examples,coverage,fuzzing",
         "--max-examples", str(MAX_EXAMPLES),
         # One worker: with two, hypothesis describes lambdas with ast.parse in two threads at
         # once, which the CPython 3.11.7 here races on ("SystemError: AST constructor recursion
         # depth mismatch", CPython gh-106905), failing the run with a runtime error now and then.
         "--workers", "1",
         "--seed", "1",
         "--generation-deterministic",  # also: no example database between runs
         "--url", base],
        capture_output=True, text=True, timeout=600, cwd=stack["tmp"])
    assert run.returncode == 0, (run.stdout[-8000:] + run.stderr[-2000:]
                                 + (stack["tmp"] / "stderr.log").read_text()[-3000:])
    selected = re.search(r"Selected: (\d+)/", run.stdout)
    assert selected and f"Tested: {selected.group(1)}\n" in run.stdout, run.stdout
    # Each detail operation answered its row at least once (access_logs records every call).
    for kind, row_id in ids.items():
        sql = (f"SELECT count() FROM access_logs WHERE path = 'GET /api/v1/logs/{kind}/{row_id}' "
               "AND status_code = 200")
        assert wait_count(stack["ch"], sql, 1) >= 1, kind
