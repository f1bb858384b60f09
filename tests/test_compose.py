"""docker-compose.yml cannot run here (no Docker engine): parse it and hold it against the
settings the app reads, the Grafana provisioning and the Prometheus config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hazardwatch.settings import Settings, check_env_names, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def mounts(service: str) -> dict[str, str]:
    """container path → source (host path or named volume)."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def default_of(value: str) -> str:
    """${VAR:-default} → default (what compose uses without a .env), embedded ones too;
    ${VAR:?message} (required in .env) → a stand-in value."""
    text = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))
    return re.sub(r"\$\{[A-Z0-9_]+:\?[^}]*\}", "set-in-env", text)


@pytest.fixture(scope="module")
def app_settings(monkeypatch_module: pytest.MonkeyPatch) -> Settings:
    env = SERVICES["hazardwatch"]["environment"]
    for name, value in env.items():
        monkeypatch_module.setenv(name, default_of(value))
    target = "/etc/hazardwatch/hazardwatch.yaml"
    source = mounts("hazardwatch")[target]
    return load_settings(ROOT / source)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_images_are_pinned_and_long_running_services_have_healthchecks() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", DOCKERFILE, re.M)


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = {
        source
        for name in SERVICES
        for source in mounts(name).values()
        if not source.startswith(".")
    }
    assert used == declared


def test_the_service_config_is_valid_and_matches_the_mounts(app_settings: Settings) -> None:
    hw = SERVICES["hazardwatch"]
    check_env_names({k: "x" for k in hw["environment"] if k.startswith("HAZARDWATCH_")})
    m = mounts("hazardwatch")
    assert app_settings.storage.data_dir.as_posix() in m  # events spool and media persist
    assert app_settings.scoring.download_dir.as_posix() in m  # weights downloaded once
    assert "/etc/hazardwatch/hazardwatch.yaml" in DOCKERFILE
    assert f"EXPOSE {app_settings.api.port}" in DOCKERFILE
    assert app_settings.api.host == "0.0.0.0"
    assert hw["ports"] == [f"127.0.0.1:{app_settings.api.port}:{app_settings.api.port}"]
    assert f":{app_settings.api.port}/healthz" in " ".join(hw["healthcheck"]["test"])


def test_database_url_matches_the_mysql_service(app_settings: Settings) -> None:
    url = urlsplit(app_settings.storage.resolved_url())
    mysql = SERVICES["mysql"]["environment"]
    assert url.scheme == "mysql+pymysql" and url.hostname == "mysql" and url.port == 3306
    assert url.username == mysql["MYSQL_USER"]
    assert url.password == default_of(mysql["MYSQL_PASSWORD"])
    assert url.path.lstrip("/") == mysql["MYSQL_DATABASE"]
    assert mounts("mysql")["/docker-entrypoint-initdb.d"] == "./deploy/mysql-init"


def test_demo_camera_is_the_mediamtx_path(app_settings: Settings) -> None:
    (camera,) = app_settings.cameras
    url = urlsplit(camera.url.get_secret_value())
    assert url.scheme == "rtsp" and url.hostname == "mediamtx" and url.port == 8554
    path = url.path.strip("/")
    env = SERVICES["mediamtx"]["environment"]
    assert f"MTX_PATHS_{path.upper()}_RUNONINIT" in env
    assert f"rtsp://localhost:8554/{path}" in env[f"MTX_PATHS_{path.upper()}_RUNONINIT"]
    assert SERVICES["mediamtx"]["depends_on"]["demo-clip"]["condition"] == (
        "service_completed_successfully"
    )


def test_prometheus_scrapes_the_service(app_settings: Settings) -> None:
    m = mounts("prometheus")
    config = yaml.safe_load((ROOT / m["/etc/prometheus/prometheus.yml"]).read_text())
    job = config["scrape_configs"][0]
    (dns,) = job["dns_sd_configs"]  # every address of the name: each events instance too
    assert (dns["names"], dns["type"]) == (["hazardwatch"], "A")
    assert dns["port"] == app_settings.api.port
    assert job["metrics_path"] == "/metrics"
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in m


def test_grafana_mounts_match_its_provisioning() -> None:
    m = mounts("grafana")
    assert m["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/hazardwatch.yaml").read_text()
    )["providers"][0]
    assert m[provider["options"]["path"]] == "./grafana/dashboards"
    env = SERVICES["grafana"]["environment"]
    assert env["HAZARDWATCH_DB_HOST"] == "mysql" and env["PROMETHEUS_URL"].startswith(
        "http://prometheus:"
    )
    assert env["HAZARDWATCH_DB_NAME"] == SERVICES["mysql"]["environment"]["MYSQL_DATABASE"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana/dashboards" / Path(home).name).is_file()


def test_gpu_profile() -> None:
    gpu = SERVICES["hazardwatch-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX"]
    assert "profiles" not in SERVICES["hazardwatch"]


def test_nothing_is_published_beyond_loopback() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_every_variant_of_the_service_answers_to_the_scraped_name() -> None:
    """Prometheus scrapes hazardwatch:8080; with the GPU profile (CPU service scaled to 0)
    that name must still reach the running service."""
    m = mounts("prometheus")
    config = yaml.safe_load((ROOT / m["/etc/prometheus/prometheus.yml"]).read_text())
    (host,) = config["scrape_configs"][0]["dns_sd_configs"][0]["names"]
    variants = [
        (name, service)
        for name, service in COMPOSE["services"].items()
        if str(service.get("image", "")).startswith("hazardwatch:") and "command" not in service
    ]  # the services that run the API (the demo clip maker runs a command of its own)
    assert len(variants) == 2
    for name, service in variants:
        aliases = service.get("networks", {}).get("default", {}).get("aliases", [])
        assert host == name or host in aliases, f"{name} is not reachable as {host}"


def test_scale_profile_runs_the_three_roles_over_jetstream(app_settings: Settings) -> None:
    """nats with JetStream on a volume; one capture node, two GPU workers, two events
    instances answering as "hazardwatch" (each API on its own loopback port) and sharing
    the partitions that the workers publish to; every role's status port scraped by
    Prometheus."""
    nats = SERVICES["nats"]
    assert nats["profiles"] == ["scale"] and "-js" in nats["command"]
    assert mounts("nats")["/data"] in COMPOSE["volumes"]
    roles = {"hazardwatch-capture": "capture", "hazardwatch-worker": "worker",
             "hazardwatch-events": "events"}  # fmt: skip
    ports = {}
    for name, role in roles.items():
        service = SERVICES[name]
        assert service["profiles"] == ["scale"]
        command = " ".join(service["command"])
        assert f"hazardwatch {role} --config /etc/hazardwatch/hazardwatch.yaml" in command
        env = {k: default_of(v) for k, v in service["environment"].items()}
        check_env_names(env)  # every HAZARDWATCH_ variable names a setting
        assert urlsplit(env["HAZARDWATCH_BROKER__URL"]).hostname == "nats"
        assert "nats" in service["depends_on"]
        if "--api-port" in service["command"]:
            port = service["command"][service["command"].index("--api-port") + 1]
            ports[name] = port
            assert f":{port}/healthz" in " ".join(service["healthcheck"]["test"])
    worker = SERVICES["hazardwatch-worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    events = SERVICES["hazardwatch-events"]
    assert "hazardwatch" in events["networks"]["default"]["aliases"]
    assert events["deploy"]["replicas"] == 2
    (published,) = events["ports"]  # a host port each: 8080 and 8081
    assert published == "127.0.0.1:8080-8081:8080"
    partitions = {default_of(SERVICES[n]["environment"]["HAZARDWATCH_BROKER__PARTITIONS"])
                  for n in ("hazardwatch-worker", "hazardwatch-events")}  # fmt: skip
    assert partitions == {"4"}  # the workers publish to the partitions the events read
    # Two replicas on one volume: a spool and a search index each, the media shared.
    command = " ".join(events["command"]).replace("$$", "$")  # compose's escape of "$"
    assert "HAZARDWATCH_STORAGE__DATA_DIR=/data/events/$(hostname)" in command
    assert "HAZARDWATCH_MEDIA__DIR=/data/media" in command
    assert app_settings.media_dir().as_posix() == "/data/media"  # as the single service
    m = mounts("prometheus")
    config = yaml.safe_load((ROOT / m["/etc/prometheus/prometheus.yml"]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["hazardwatch-capture"]["static_configs"][0]["targets"] == [
        f"hazardwatch-capture:{ports['hazardwatch-capture']}"
    ]
    (dns,) = jobs["hazardwatch-worker"]["dns_sd_configs"]
    assert (
        dns["names"] == ["hazardwatch-worker"] and str(dns["port"]) == ports["hazardwatch-worker"]
    )


def test_the_api_needs_a_token_and_nats_a_password(app_settings: Settings) -> None:
    """Issue 30.6: the compose deployment bound the API on 0.0.0.0 with no token and ran
    NATS without credentials."""
    assert "API_TOKEN:?" in SERVICES["hazardwatch"]["environment"]["API_TOKEN"]
    assert app_settings.api.token is not None and app_settings.api.exposure() is None
    assert {"localhost", "hazardwatch"} <= set(app_settings.api.allowed_hosts)
    nats = SERVICES["nats"]["command"]
    assert nats[nats.index("--user") + 1] == "hazardwatch" and "--pass" in nats
    password = default_of(nats[nats.index("--pass") + 1])
    for name in ("hazardwatch-capture", "hazardwatch-worker", "hazardwatch-events"):
        env = SERVICES[name]["environment"]
        url = urlsplit(default_of(env["HAZARDWATCH_BROKER__URL"]))
        assert (url.username, url.password) == ("hazardwatch", password), name
        assert "API_TOKEN" in env, name
