"""Every `curl` example of docs/api.md runs, as written, against a running `logbook serve` (the
`stack` fixture) with the demo's rows: `$LB` and `$T` are the test server and an owner token,
the one placeholder row id (`0193a1f2-…`) becomes a real one, and the documented rotated log
file exists. curl runs with `--fail-with-body` and pipes with `pipefail`, so an example that
names an unknown route, filter or value (4xx), or whose `jq` does not fit the answer, fails.
Needs the logbook binary: `cargo build`, or LOGBOOK_BIN."""

import os
import re
import subprocess

import pytest

from conftest import wait_count
from logbook_stack import BIN, ROOT, demo_rows_of_every_kind, owner_token

DATABASE = "api_docs_test"
CONFIG_EXTRA = ('[log.file]\npath = "{tmp}/logs/logbook.log"\n'
                "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n")
DOC = ROOT / "docs" / "api.md"
ROW_PLACEHOLDER = "0193a1f2-…"


def examples():
    """(line number, command) of each curl call in the doc's sh blocks, continuation lines
    joined, and the shell variables those blocks set besides `LB` and `T`."""
    commands, variables = [], []
    for block in re.finditer(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        first_line = DOC.read_text()[: block.start()].count("\n") + 2
        lines = block.group(1).replace("\\\n", " ").split("\n")
        for offset, line in enumerate(lines):
            line = line.strip()
            if line.startswith("curl "):
                commands.append((first_line + offset, line))
            elif re.match(r"^[A-Z]+=\S", line) and not line.startswith(("LB=", "T=")):
                variables.append(line)
    return commands, variables


COMMANDS, VARIABLES = examples()


def test_the_doc_has_an_example_of_every_route():
    text = " ".join(c for _, c in COMMANDS).replace("$S", "$LB/api/v1/settings")
    for pattern in [r"\$LB/api/openapi\.json", r"\$LB/api/v1/kinds", r"\$LB/api/v1/logs/\w+ ",
                    r"\$LB/api/v1/logs/\w+/" + re.escape(ROW_PLACEHOLDER), r"\$LB/api/v1/findings",
                    r"\$LB/api/v1/integrations", r"\$LB/api/v1/settings ",
                    r"-X PUT \$LB/api/v1/settings/", r"-X DELETE \$LB/api/v1/settings/",
                    r"-X POST \$LB/api/v1/maintenance/purge", r"\$LB/api/v1/maintenance/log-files ",
                    r"-O \$LB/api/v1/maintenance/log-files/", r"-X DELETE \"\$LB/api/v1/maintenance/log-files/"]:
        assert re.search(pattern, text), pattern


@pytest.fixture(scope="module")
def shell(stack):
    base, ch = stack["api"], stack["ch"]
    token = owner_token(stack, "docs")
    demo_rows_of_every_kind(stack)
    assert wait_count(ch, "SELECT count() FROM api_calls", 1) >= 1
    row = ch.query("SELECT toString(id) FROM api_calls ORDER BY time DESC LIMIT 1").result_rows[0][0]
    for name in re.findall(r"log-files/(logbook\.log\.[\w.]+\.gz)", DOC.read_text()):
        (stack["tmp"] / "logs" / name).write_text("an older day's log\n")
    preamble = "\n".join([
        "set -eo pipefail",
        'curl() { command curl --fail-with-body "$@"; }',
        f"LB={base}",
        f"T={token}",
        *VARIABLES,
    ])
    work = stack["tmp"] / "downloads"
    work.mkdir()

    def run(command):
        script = preamble + "\n" + command.replace(ROW_PLACEHOLDER, row)
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=work, env=dict(os.environ, PATH=f"{BIN.parent}:{os.environ['PATH']}"))
    return run


@pytest.mark.parametrize("line,command", COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_example_runs(shell, line, command):
    run = shell(command)
    assert run.returncode == 0, f"docs/api.md:{line}: {command}\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
