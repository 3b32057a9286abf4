"""docker-compose.yml and docker-compose.cluster.yml, checked without building or pulling
anything: Debian's `docker-compose config` validates them, every file they mount exists, every
image is pinned, services wait for what they need, the ClickHouse users Grafana and analysts
use are read-only with limits the engine knows, and the cluster's pieces name each other
consistently."""

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import chdb
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ["docker-compose.yml", "docker-compose.cluster.yml"]


def config(name):
    run = subprocess.run(["docker-compose", "-f", str(ROOT / name), "config"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


@pytest.fixture(scope="module", params=FILES)
def compose(request):
    return request.param, config(request.param)


def test_compose_file_is_valid_and_mounts_only_existing_files(compose):
    name, c = compose
    mounts = 0
    for service, s in c["services"].items():
        for volume in s.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            kind = volume.get("type") if isinstance(volume, dict) else None
            if kind == "volume" or not source.startswith("/"):
                assert source in c.get("volumes", {}), f"{service}: undeclared volume {source}"
                continue
            mounts += 1
            assert Path(source).exists(), f"{name}: {service} mounts {source}, which is missing"
    assert mounts >= 5


def test_images_are_pinned_and_services_wait_for_what_they_need(compose):
    name, c = compose
    for service, s in c["services"].items():
        if "build" in s:
            assert (ROOT / s["build"]["context"] / "Dockerfile").exists()
            continue
        image = s["image"]
        assert re.search(r":v?\d+\.\d+", image), f"{service}: {image} is not pinned to a version"
        assert "healthcheck" in s, f"{service} has no health check"
    long_lived = [n for n, s in c["services"].items()
                  if s.get("restart") == "unless-stopped" and n not in ("keeper", "smtp")]
    for service in long_lived:
        for dep, cond in c["services"][service].get("depends_on", {}).items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully",
                                         "service_started"), (service, dep)
    migrate = c["services"]["migrate"]
    assert migrate["command"][0] == "migrate"
    servers = [n for n, s in c["services"].items() if s.get("command", [""])[0] == "serve"]
    assert servers, "no logbook serve"
    for server in servers:
        assert c["services"][server]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"


def test_single_machine_stack_has_every_part():
    c = config("docker-compose.yml")
    services = c["services"]
    for needed in ("clickhouse", "migrate", "logbook", "demo", "prometheus", "alertmanager",
                   "grafana", "smtp"):
        assert needed in services, needed
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert services["logbook"]["environment"]["LOGBOOK_CLICKHOUSE_USER"] == "logbook"
    assert {"clickhouse-data", "logbook-queue", "grafana-data"} <= set(c["volumes"])


def test_dockerfile_is_multi_stage_non_root_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2 and all(":" in s for s in stages), stages
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), user
    assert re.search(r"^HEALTHCHECK .*CMD", text, re.M | re.S)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".venv" in ignored


def users():
    tree = ET.parse(ROOT / "config" / "clickhouse" / "users.d" / "logbook.xml").getroot()
    return tree


def test_grafana_and_analysts_read_only_with_limits_the_engine_knows():
    root = users()
    reader = root.find("profiles/reader")
    assert reader.findtext("readonly") in ("1", "2")
    settings = [e.tag for e in reader if e.tag != "constraints"]
    settings += [e.tag for e in reader.find("constraints")]
    known = chdb.query("SELECT name FROM system.settings WHERE name IN ({})".format(
        ",".join(f"'{s}'" for s in set(settings))), "CSV").bytes().decode().split()
    assert sorted(set(settings)) == sorted(s.strip('"') for s in known)
    for user in ("grafana", "analyst"):
        u = root.find(f"users/{user}")
        assert u.findtext("profile") == "reader" and u.findtext("quota") == "reader"
        grants = [q.text for q in u.findall("grants/query")]
        assert grants == ["GRANT SELECT ON logbook.*"], grants
    for q in root.iter("query"):
        # The statement parses as the engine's grammar has it.
        formatted = chdb.query(f"SELECT formatQuery('{q.text} TO someone')", "CSV").bytes().decode()
        assert "GRANT" in formatted, formatted
    datasource = yaml.safe_load(
        (ROOT / "config/grafana/provisioning/datasources/logbook.yml").read_text())
    clickhouse = next(d for d in datasource["datasources"] if d["uid"] == "clickhouse")
    assert clickhouse["jsonData"]["username"] == "grafana"
    # Every password the users file reads from the environment is given to the server.
    for c in (config(f) for f in FILES):
        for name, s in c["services"].items():
            if s.get("image", "").startswith("clickhouse/clickhouse-server"):
                for p in root.iter("password"):
                    assert p.get("from_env") in s["environment"], (name, p.get("from_env"))


def test_cluster_servers_macros_and_load_balancer_agree():
    c = config("docker-compose.cluster.yml")
    services = c["services"]
    cluster = ET.parse(ROOT / "config/clickhouse/cluster/cluster.xml").getroot()
    shards = cluster.findall("remote_servers/logbook/shard")
    assert len(shards) == 2
    for number, shard in enumerate(shards, start=1):
        replicas = [r.findtext("host") for r in shard.findall("replica")]
        assert len(replicas) == 2
        for host in replicas:
            env = services[host]["environment"]
            assert int(env["CH_SHARD"]) == number and env["CH_REPLICA"] == host
    assert cluster.find("zookeeper/node/host").text in services
    # Every logbook, migrate included, names the cluster the servers define.
    for name, s in services.items():
        if s.get("image") == "logbook:local":
            assert s["environment"]["LOGBOOK_CLICKHOUSE_CLUSTER"] == "logbook", name
    assert services["migrate"]["command"] == ["migrate"]
    haproxy = (ROOT / "config/haproxy/haproxy.cfg").read_text()
    backends = set(re.findall(r"^\s*server \S+ ([\w-]+):\d+", haproxy, re.M))
    replicas = {n for n, s in services.items() if s.get("command") == ["serve"]}
    assert backends == replicas and len(replicas) == 2


def test_alertmanager_of_the_stack_is_the_real_config_sending_to_the_smtp_catcher(tmp_path):
    """The compose service rewrites only the global SMTP settings of config/alertmanager.yml;
    the result is a valid Alertmanager configuration (amtool) sending to the `smtp` service."""
    service = config("docker-compose.yml")["services"]["alertmanager"]
    script = service["command"][0].split(" && exec ")[0]
    script = script.replace("/etc/alertmanager/alertmanager.yml",
                            str(ROOT / "config" / "alertmanager.yml"))
    script = script.replace("/alertmanager/alertmanager.yml", str(tmp_path / "alertmanager.yml"))
    subprocess.run(["sh", "-c", script], check=True)
    (tmp_path / "alertmanager-templates").symlink_to(ROOT / "config" / "alertmanager-templates")
    rendered = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert rendered["global"]["smtp_smarthost"] == "smtp:1025"
    assert rendered["global"]["smtp_require_tls"] is False
    assert not any(k.startswith("smtp_auth_") for k in rendered["global"])
    original = yaml.safe_load((ROOT / "config" / "alertmanager.yml").read_text())
    assert rendered["route"] == original["route"] and rendered["receivers"] == original["receivers"]
    check = subprocess.run(["amtool", "check-config", str(tmp_path / "alertmanager.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "smtp" in config("docker-compose.yml")["services"]
