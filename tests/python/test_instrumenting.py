"""docs/instrumenting.md's examples, run as written against a real logbook: each must make
exactly the rows the guide shows under it. The code blocks are taken from the guide itself
(`example=NAME`), with the SQL (`check=NAME`) and the rows it returns (`result=NAME`)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import wait_count
from logbook_stack import BIN, ROOT

GUIDE = ROOT / "docs" / "instrumenting.md"
RUST_EXAMPLE = ROOT / "crates" / "logbook-events" / "examples" / "instrumenting.rs"
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
DATABASE = "logbook"


def blocks(kind):
    """The guide's fenced blocks whose info string has `kind=NAME`, by NAME."""
    text = GUIDE.read_text()
    found = re.findall(r"^```\w+ " + kind + r"=([\w-]+)\n(.*?)^```$", text, re.S | re.M)
    return dict(found)


EXAMPLES = blocks("example")
CHECKS = blocks("check")
RESULTS = blocks("result")


def test_guide_has_an_example_per_language_and_the_rust_one_is_the_crate_example():
    assert set(EXAMPLES) == {"rust", "python", "node", "curl"}
    assert set(RESULTS) == set(CHECKS) and set(EXAMPLES) <= set(CHECKS)
    assert EXAMPLES["rust"] == RUST_EXAMPLE.read_text()


def run_example(name, stack, tmp_path):
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=stack["http"], LOGBOOK=stack["http"],
               LOGBOOK_OTLP=stack["grpc"], NODE_PATH=str(NODE_MODULES))
    code = EXAMPLES[name]
    if name == "rust":
        # `cargo test --all-targets` builds examples as test binaries only: build the example.
        subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "logbook-events",
                        "--example", "instrumenting"], cwd=ROOT, check=True, timeout=900)
        command = [str(BIN.parent / "examples" / "instrumenting")]
        assert os.path.exists(command[0]), command[0]
    elif name == "python":
        (tmp_path / "example.py").write_text(code)
        command = [sys.executable, "example.py"]
    elif name == "node":
        (tmp_path / "example.js").write_text(code)
        command = ["node", "example.js"]
    else:
        (tmp_path / "example.sh").write_text("set -euo pipefail\n" + code)
        command = ["bash", "example.sh"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def check(name, stack):
    sql = CHECKS[name]
    want = RESULTS[name].splitlines()
    wait_count(stack["ch"], f"SELECT count() FROM ({sql})", len(want), within=30)
    have = stack["ch"].query(sql).result_rows
    text = ["\t".join(str(int(v) if isinstance(v, bool) else v) for v in row) for row in have]
    assert text == want, f"{name}: {sql}"


@pytest.mark.parametrize("name", ["rust", "python", "node", "curl"])
def test_guide_example_makes_the_rows_it_shows(stack, name, tmp_path):
    output = run_example(name, stack, tmp_path)
    for check_name in [c for c in CHECKS if c == name or c.startswith(name + "-")]:
        check(check_name, stack)
    if name == "curl":
        # The dry run answered first, with the row it would make and nothing rejected.
        assert '"table":"integration_sync_runs"' in output, output
        assert '"rejected":0' in output, output
