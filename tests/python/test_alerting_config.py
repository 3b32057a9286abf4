"""The alerting configuration, checked with the real tools (Debian `prometheus` and
`prometheus-alertmanager`, installed by scripts/setup): rules and config files are valid,
every alert has its unit tests, labels and runbook, and Alertmanager routes as documented."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = sorted((ROOT / "alerts").glob("*.yml"))
TESTS = sorted((ROOT / "tests" / "alerts").glob("*.test.yml"))


def run(*args, cwd=ROOT):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def alert_rules():
    for path in ALERTS:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from (rule for rule in group["rules"] if "alert" in rule)


def test_prometheus_config_and_rules_are_valid():
    out = run("promtool", "check", "config", "config/prometheus.yml")
    assert f"SUCCESS: {len(ALERTS)} rule files found" in out, out


def test_rule_unit_tests_pass():
    out = run("promtool", "test", "rules", *[p.name for p in TESTS], cwd=ROOT / "tests" / "alerts")
    assert out.count("SUCCESS") == len(TESTS), out


def test_every_alert_has_tests_that_see_it_fire_and_stay_silent():
    fired, silent = set(), set()
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never seen firing in tests/alerts"
    # Alerts whose condition is a threshold are also seen staying silent.
    thresholds = {rule["alert"] for rule in alert_rules() if re.search(r">=|> [1-9]", rule["expr"])}
    assert thresholds - silent - {"LogbookRecordsRefused", "LogbookDeadLetters"} == set()


def test_every_alert_has_severity_texts_and_a_runbook_section():
    headings = {
        line.lstrip("#").strip().lower()
        for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        doc, anchor = annotations["runbook_url"].split("#")
        assert doc == "docs/runbooks.md" and anchor in headings, rule["alert"]


def test_alertmanager_config_is_valid():
    out = run("amtool", "check-config", "config/alertmanager.yml")
    assert "SUCCESS" in out and "1 templates" in out, out
    text = (ROOT / "config" / "alertmanager.yml").read_text()
    assert "smtp_auth_password:" not in text, "the SMTP password comes from a file"


@pytest.mark.parametrize(
    "labels, receivers",
    [
        ("alertname=IntegrationErrorRateHigh integration=NinjaOne severity=warning", "integrations"),
        ("alertname=IntegrationSyncCollapsing integration=NinjaOne severity=critical", "integrations-critical"),
        ("alertname=IntegrationErrorRateHigh integration=Xero severity=warning", "finance-integrations"),
        ("alertname=IntegrationSyncCollapsing integration=Xero severity=critical", "integrations-critical"),
        ("alertname=LogbookDown instance=a severity=critical", "oncall-critical"),
        ("alertname=MonitoringEventsCritical log_type=Integrator severity=critical", "oncall-critical"),
        ("alertname=BotApiErrorSpike bot=helpdesk severity=warning", "oncall"),
        ("alertname=MonitoringEventsInfo severity=info", "digest"),
    ],
)
def test_alertmanager_routes(labels, receivers):
    run("amtool", "config", "routes", "test", "--config.file=config/alertmanager.yml",
        f"--verify.receivers={receivers}", *labels.split())


def test_fast_copies_scale_ranges_and_holds_only(tmp_path):
    run(str(ROOT / "scripts" / "fast-alerting"), "rules", "--scale", "720", str(tmp_path))
    recording = (tmp_path / "integrations.yml").read_text()
    assert "[120000ms]" in recording and "[5000ms]" in recording and "[4000ms]" in recording
    fast = (tmp_path / "integrations.yml").read_text()
    assert "for: 833ms" in fast and "over 24h" in fast  # texts keep the nominal window
    for path in ALERTS:
        fast = (tmp_path / path.name).read_text()
        original = path.read_text()
        assert re.sub(r"\[[^\]]+\]|for: \S+", "", fast) == re.sub(r"\[[^\]]+\]|for: \S+", "", original)
    run("promtool", "check", "rules", *map(str, sorted(tmp_path.glob("*.yml"))))
