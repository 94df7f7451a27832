"""The compose deployment (docker/): no Docker engine runs here, so the files are checked for
what would break a real `docker compose up`: every service named with its image, ports,
volumes and health check, and each agreeing with the dialplan and the `ivrs` command."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DIALPLAN = ROOT / "dialplan"
SERVICES = {"asterisk", "ivr", "backend", "postgres"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def dialplan_globals() -> dict[str, str]:
    values: dict[str, str] = {}
    in_globals = False
    for raw in (DIALPLAN / "extensions.conf").read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            in_globals = line == "[globals]"
        elif in_globals and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def conf_value(path: Path, section: str, key: str) -> list[str]:
    found, current = [], None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line:
            name, _, value = line.partition("=")
            if name.strip() == key:
                found.append(value.strip())
    return found


def volumes(service: dict[str, Any]) -> dict[str, str]:
    """target path -> source (named volume or relative path), read-only suffix dropped."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        mounts[target] = source
    return mounts


def is_ivrs_subcommand(argv: list[str]) -> bool:
    """argv runs a subcommand of the `ivrs` console script (parsed, not run)."""
    if argv[:1] != ["ivrs"]:
        return False
    try:
        return build_parser().parse_args(argv[1:]).command == argv[1]
    except SystemExit:
        return False


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    text = (DOCKER / name).read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --- the file and its services ----------------------------------------------------------


def test_compose_names_the_four_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_and_a_health_check(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["image"]
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    assert service["restart"] == "unless-stopped"


def test_images_are_pinned_by_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image, _, tag = service["image"].rpartition(":")
        assert image and re.match(r"\d", tag), f"{name}: {service['image']} has no version tag"
    # Asterisk comes from a maintained image (not built here), 20 or 22.
    assert re.fullmatch(
        r"andrius/asterisk:2[02]\.\d+\.\d+_debian-\w+", compose["services"]["asterisk"]["image"]
    )
    assert "build" not in compose["services"]["asterisk"]


def test_health_checks_probe_what_each_service_serves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "/v1/health" in " ".join(services["backend"]["healthcheck"]["test"])
    assert "4573" in " ".join(services["ivr"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "res_agi" in " ".join(services["asterisk"]["healthcheck"]["test"])


def test_start_order_follows_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["backend"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["ivr"]["depends_on"]["backend"]["condition"] == "service_healthy"
    # Asterisk must answer (and play its fallback) even when the IVR is down.
    assert services["asterisk"]["depends_on"]["ivr"]["condition"] == "service_started"


# --- the Python image and the `ivrs` command --------------------------------------------


def test_python_services_share_one_image_built_from_dockerfile_python(
    compose: dict[str, Any],
) -> None:
    ivr, backend = compose["services"]["ivr"], compose["services"]["backend"]
    assert ivr["image"] == backend["image"]
    for service in (ivr, backend):
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.python"}
    assert (DOCKER / "Dockerfile.python").exists()


def test_commands_are_ivrs_subcommands(compose: dict[str, Any]) -> None:
    instructions = dockerfile_instructions("Dockerfile.python")
    (cmd,) = [json.loads(rest) for keyword, rest in instructions if keyword == "CMD"]
    assert cmd == ["ivrs", "agi"] and is_ivrs_subcommand(cmd)
    assert compose["services"]["ivr"]["command"] == ["ivrs", "agi"]
    assert compose["services"]["backend"]["command"] == ["ivrs", "backend"]
    for name in ("ivr", "backend"):
        assert is_ivrs_subcommand(compose["services"][name]["command"])
    assert not is_ivrs_subcommand(["ivrs", "no-such-command"])


def test_dockerfile_is_python_311_slim_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions("Dockerfile.python")
    (base,) = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert base.startswith("python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(k == "RUN" and "pip install ." in rest for k, rest in instructions)
    # uid 1000 = the asterisk user of andrius/asterisk: both may use the recordings volume.
    assert any(k == "RUN" and "--uid 1000" in rest for k, rest in instructions)


def test_build_context_sends_the_packages_pip_needs() -> None:
    ignore = (DOCKER / "Dockerfile.python.dockerignore").read_text(encoding="utf-8")
    kept = {line[1:].strip("/") for line in ignore.splitlines() if line.startswith("!")}
    assert {"pyproject.toml", "README.md"} <= kept
    for package in ("ivr", "otp", "backend_client", "backend", "prompts", "formats", "cli"):
        assert package in kept and (ROOT / package).is_dir()


# --- agreement with the dialplan --------------------------------------------------------


def test_fastagi_port_is_where_the_dialplan_connects(compose: dict[str, Any]) -> None:
    plan = dialplan_globals()
    ivr = compose["services"]["ivr"]
    assert compose["services"]["asterisk"]["network_mode"] == "host"  # its 127.0.0.1 is the host's
    published = (
        f"{plan['IVRS_AGI_HOST']}:{plan['IVRS_AGI_PORT']}:{ivr['environment']['IVRS_AGI_PORT']}"
    )
    assert ivr["ports"] == [published]
    assert ivr["environment"]["IVRS_AGI_HOST"] == "0.0.0.0"


def test_backend_port_is_where_the_hangup_handler_posts(compose: dict[str, Any]) -> None:
    plan = dialplan_globals()
    backend = compose["services"]["backend"]
    url = re.fullmatch(r"http://([\d.]+):(\d+)", plan["IVRS_BACKEND_URL"])
    assert url, plan["IVRS_BACKEND_URL"]
    host, port = url.groups()
    assert backend["ports"] == [f"{host}:{port}:{backend['environment']['IVRS_BACKEND_PORT']}"]
    assert backend["environment"]["IVRS_BACKEND_HOST"] == "0.0.0.0"
    assert compose["services"]["ivr"]["environment"]["IVRS_BACKEND_URL"] == (
        f"http://backend:{backend['environment']['IVRS_BACKEND_PORT']}"
    )


def test_recordings_volume_joins_mixmonitor_and_the_backend(compose: dict[str, Any]) -> None:
    plan = dialplan_globals()
    asterisk = volumes(compose["services"]["asterisk"])
    backend = compose["services"]["backend"]
    assert asterisk[plan["IVRS_RECORDINGS"]] == "recordings"
    assert volumes(backend)[backend["environment"]["IVRS_RECORDINGS_DIR"]] == "recordings"
    assert "recordings:/data/recordings:ro" in backend["volumes"]  # the backend only reads


def test_sounds_volume_joins_the_prompt_builder_and_asterisk(compose: dict[str, Any]) -> None:
    ivr = compose["services"]["ivr"]
    assert volumes(ivr)[ivr["environment"]["IVRS_SOUNDS_DIR"]] == "sounds"
    assert volumes(compose["services"]["asterisk"])["/var/lib/asterisk/sounds"] == "sounds"
    assert "sounds:/var/lib/asterisk/sounds:ro" in compose["services"]["asterisk"]["volumes"]


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {
        source
        for service in compose["services"].values()
        for source in volumes(service).values()
        if not source.startswith(".")
    }
    assert used == set(compose["volumes"]) == {"sounds", "recordings", "pgdata"}


def test_asterisk_config_is_mounted_from_the_dialplan_folder(compose: dict[str, Any]) -> None:
    mounts = volumes(compose["services"]["asterisk"])
    for name in ("extensions.conf", "pjsip.conf", "manager.conf", "modules.conf"):
        source = mounts[f"/etc/asterisk/{name}"]
        assert source == f"../dialplan/{name}"
        assert (DOCKER / source).resolve() == DIALPLAN / name
    for target, source in mounts.items():
        if source.startswith("."):
            assert (DOCKER / source).exists(), f"{target}: {source} is missing"


def test_ami_listens_on_the_private_compose_network(compose: dict[str, Any]) -> None:
    (bindaddr,) = conf_value(DIALPLAN / "manager.conf", "general", "bindaddr")
    (ipam,) = compose["networks"]["ivrs"]["ipam"]["config"]
    subnet = ipaddress.ip_network(ipam["subnet"])
    assert ipaddress.ip_address(bindaddr) in subnet
    assert ipaddress.ip_address(bindaddr) in ipaddress.ip_network("10.0.0.0/8")
    assert bindaddr == ipam["gateway"]  # the host's address on that network (host networking)
    env = compose["services"]["ivr"]["environment"]
    assert env["IVRS_AMI_HOST"] == bindaddr and env["IVRS_AMI_USERNAME"] == "ivrs"
    permits = conf_value(DIALPLAN / "manager.conf", "ivrs", "permit")
    assert any(ipaddress.ip_network(p) == subnet for p in permits)
    assert "ports" not in compose["services"]["postgres"]  # the database stays private


# --- secrets ----------------------------------------------------------------------------

SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|KEY)(_|$)")


def test_secrets_come_from_the_env_file_never_from_compose(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}: {key} is literal"
    url = compose["services"]["backend"]["environment"]["IVRS_DATABASE_URL"]
    assert re.fullmatch(
        r"postgresql\+asyncpg://ivrs:\$\{IVRS_DB_PASSWORD:\?[^}]+\}@postgres:5432/ivrs", url
    )
    example = (DOCKER / ".env.example").read_text(encoding="utf-8")
    assignments = [line for line in example.splitlines() if re.match(r"^\w+=", line)]
    assert assignments and all(line.endswith("=") for line in assignments)
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()


def test_asterisk_start_writes_the_ami_secret_manager_conf_includes() -> None:
    script = (DOCKER / "asterisk-start.sh").read_text(encoding="utf-8")
    assert "/etc/asterisk/manager_ivrs_secret.conf" in script
    assert "IVRS_AMI_SECRET:?" in script and "umask 077" in script
    assert re.search(r"^exec /usr/sbin/asterisk -f\b", script, re.M)
