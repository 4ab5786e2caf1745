"""The compose stack: Caddy in front of two identical app replicas, and the Caddyfile it mounts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_compose_puts_caddy_in_front_of_two_identical_replicas() -> None:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "app1", "app2", "caddy", "coturn"} <= set(services)
    app1, app2 = services["app1"], services["app2"]
    assert app1["environment"] == app2["environment"] and app1["image"] == app2["image"]
    assert "ports" not in app2  # only Caddy (and app1 on loopback, for a proxy of one's own) is published
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["caddy"]["volumes"]
    assert {"80:80", "443:443"} <= set(services["caddy"]["ports"])


def test_caddyfile_proxies_both_replicas_and_hides_metrics() -> None:
    text = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "reverse_proxy app1:8080 app2:8080" in text
    assert "health_uri /healthz" in text
    assert "@metrics path /metrics" in text and "respond @metrics 404" in text
    assert "tls internal" in text
    assert "\n\tlog" not in text  # no access log: join tokens in /j/ and /s/ stay off disk


def test_compose_file_resolves_with_the_example_env() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    run = subprocess.run([compose, "--env-file", ".env.example", "config", "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
