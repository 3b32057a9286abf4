"""Shared fixtures: `stack` runs a real `logbook serve` (migrated) on its own chdb-backed
ClickHouse for one test module, in the database the module names as `DATABASE`, with the
module's `CONFIG_EXTRA` (TOML, `{tmp}` standing for the module's temporary directory) appended
to its configuration. Needs the logbook binary: `cargo build` (scripts/test runs cargo test
first), or LOGBOOK_BIN."""

import time

import pytest

from logbook_stack import running_logbook

PASSWORD = "sdk-test-pw"


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logbook")
    database = getattr(request.module, "DATABASE", "logbook")
    extra = getattr(request.module, "CONFIG_EXTRA", "").replace("{tmp}", str(tmp))
    with running_logbook(tmp, database, PASSWORD, extra) as stack:
        yield stack


def wait_count(client, sql, want, within=20):
    """Polls `sql` (a count) until it reaches `want` or `within` seconds pass; its last value."""
    deadline = time.time() + within
    while True:
        have = client.query(sql).result_rows[0][0]
        if have >= want or time.time() > deadline:
            return have
        time.sleep(0.2)
