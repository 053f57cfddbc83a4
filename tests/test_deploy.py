"""The Docker deployment files, read with real parsers: no Docker engine runs on the test machines.

``compose.yaml`` is parsed by PyYAML (anchors and merge keys resolved as Compose resolves them) and its structure
checked against the code: every ``EDGEOPT_`` variable it sets is a field of ``edgeopt.settings.Settings``, every
command is an ``edgeopt`` command that exists, every named volume is declared.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edgeopt.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = {f"EDGEOPT_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_the_services_and_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"api", "worker", "postgres", "redis"}
    assert set(compose["volumes"]) == {"db", "storage", "data"}
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"
    assert "db:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    # The API and every worker see the same uploads and artifacts.
    assert "storage:/var/lib/edgeopt/storage" in services["api"]["volumes"]
    assert "storage:/var/lib/edgeopt/storage" in services["worker"]["volumes"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert "ports" not in services["worker"]  # scalable: replicas must not fight over a host port


def test_compose_settings_are_edgeopt_settings_and_reach_api_and_worker() -> None:
    services = _compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        unknown = {key for key in env if key.startswith("EDGEOPT_")} - SETTINGS_ENV
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        assert env["EDGEOPT_BROKER_URL"].startswith("redis://redis:")
        assert env["EDGEOPT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["EDGEOPT_DATABASE_URL"]
        assert env["EDGEOPT_STORAGE_DIR"] == "/var/lib/edgeopt/storage"
    assert services["api"]["environment"] == services["worker"]["environment"]


def test_compose_commands_are_edgeopt_commands() -> None:
    from typer.main import get_command

    from edgeopt.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    services = _compose()["services"]
    for name in ("api", "worker"):
        command = services[name]["command"]
        assert command[0] == "edgeopt" and command[1] in commands, command
    assert services["worker"]["command"][1] == "worker"
    assert services["api"]["command"][1] == "serve"


def test_dockerfile_builds_the_web_app_then_the_service() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert [image.split(":")[0] for image, _ in stages] == ["node", "python"]
    assert stages[1][0].startswith("python:3.11")
    assert "COPY --from=web /web/dist ./src/edgeopt/service/static" in text
    assert "-c requirements.lock" in text
    env_names = set(re.findall(r"\b(EDGEOPT_[A-Z_]+)=", text))
    assert env_names <= SETTINGS_ENV, env_names - SETTINGS_ENV
