"""The files of ``deploy/``, checked without a container runtime.

Schemas (compose-spec, Kubernetes), hadolint, the image's rules, and agreement
with the code: every variable a saga process is given is one it reads, every
probe asks the server for a path it serves on the port it listens on, the
RabbitMQ definitions are what ``saga topology --export`` prints today, and each
process logs into Redis as the ACL user of its role, from a file with
``default`` off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import opentelemetry.environment_variables as otel_api_env
import opentelemetry.sdk.environment_variables as otel_sdk_env
import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from coordinator.adapters.redis._acl import ACL_ROLES
from coordinator.cli import app
from coordinator.service import Settings
from coordinator.service._http import Readiness, http_app
from coordinator.service._settings import http_address

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
USERS_ACL = DEPLOY / "redis" / "users.acl"
OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
# The command that wrote DEFINITIONS (the README says so too).
TOPOLOGY_ARGS = [
    "topology",
    "--export",
    "--users",
    "--saga",
    "coordinator.examples.orders:saga",
    "--namespace",
    "saga",
]
IMAGE = "saga-coordinator"
PROBES = {"/livez", "/readyz"}
# The Redis ACL user each long-running command logs in as (README, "Redis ACL users").
REDIS_ROLE = {"run": "coordinator", "participant": "participant", "api": "reader"}


def tool(name: str) -> str:
    """A program of the venv running the tests (where pip puts it), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")  # fails under CI
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


# -- the variables and the server the files must agree with ------------------------------


def setting_names() -> set[str]:
    return {f"SAGA_{name.upper()}" for name in Settings.model_fields}


OTEL_NAMES = {
    value
    for module in (otel_api_env, otel_sdk_env)
    for value in vars(module).values()
    if isinstance(value, str) and value.startswith("OTEL_")
}
# Read by the example worker (coordinator/examples/orders/worker.py).
EXAMPLE_NAMES = {"ORDERS_LEDGER", "ORDERS_DOWN", "ORDERS_DOWN_FILE", "ORDERS_SERVICES"}
PYTHON_NAMES = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
# Read by `saga acl --export` (coordinator/cli/_acl.py).
ACL_NAMES = {f"SAGA_ACL_{role.upper()}_PASSWORD" for role in ACL_ROLES}


def unknown_variables(names: set[str]) -> list[str]:
    known = setting_names() | OTEL_NAMES | EXAMPLE_NAMES | PYTHON_NAMES | ACL_NAMES
    return sorted(names - known)


def served_paths() -> set[str]:
    app_ = http_app(Readiness(), CollectorRegistry())
    return {route.path for route in app_.routes}


# -- compose ----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def saga_services(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in document["services"].items():
        if str(service.get("image", "")).startswith(IMAGE):
            yield name, service


def saga_processes(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services of the image that keep running (not the one-shot setups)."""
    for name, service in saga_services(document):
        if service.get("restart") != "no":
            yield name, service


def interpolated(value: str) -> str:
    """``value`` as compose runs it with no variable set: each ``${NAME:-default}``
    its default (a ``${NAME:?error}`` fails: it is only for lines left commented)."""
    assert "${" not in re.sub(r"\$\{[A-Z0-9_]+:-[^}]*\}", "", value), value
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value).replace("$$", "$")


def url_password_source(url: str) -> str:
    """The password of a URL as written in the file (the ``${...}`` expression)."""
    found = re.match(r"[a-z]+://[^:@/]+:(\$\{[^}]+\}|[^@]*)@", url)
    assert found is not None, url
    return found.group(1)


def test_compose_is_valid_against_the_compose_spec() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_gives_saga_processes_only_variables_they_read() -> None:
    names: set[str] = set()
    for _, service in saga_services(compose()):
        names |= set(service["environment"])
    assert names, "no service of the saga image"
    assert unknown_variables(names) == []
    # The settings shown commented out, to turn on by hand, must exist too.
    commented = set(re.findall(r"^\s*#\s*(SAGA_[A-Z0-9_]+):", COMPOSE.read_text(), re.M))
    assert {"SAGA_SIGNING_KEYS", "SAGA_DATA_KEYS"} <= commented
    assert unknown_variables(commented) == []


def test_compose_health_checks_ask_the_server_where_it_listens() -> None:
    for name, service in saga_processes(compose()):
        port = http_address(service["environment"]["SAGA_HTTP"])[1]
        url = re.search(r"http://[^'\"]+", " ".join(service["healthcheck"]["test"]))
        assert url is not None, name
        parts = urlsplit(url.group())
        assert (parts.port, parts.path) in {(port, path) for path in PROBES}, name
        assert parts.path in served_paths()


def test_compose_waits_for_healthy_servers() -> None:
    document = compose()
    waiting = [*saga_processes(document), ("redis", document["services"]["redis"])]
    for name, service in waiting:
        for needed, condition in service["depends_on"].items():
            wanted = (
                "service_completed_successfully" if needed.endswith("setup") else "service_healthy"
            )
            assert condition == {"condition": wanted}, (name, needed)
            if wanted == "service_healthy":
                assert "healthcheck" in document["services"][needed], needed
    redis = " ".join(document["services"]["redis"]["command"])
    assert "--appendonly yes" in redis and "--appendfsync always" in redis


def test_compose_redis_loads_the_acl_file_saga_acl_writes_with_default_off() -> None:
    services = compose()["services"]
    redis, setup = services["redis"], services["redis-setup"]
    aclfile = redis["command"][redis["command"].index("--aclfile") + 1]
    assert redis["depends_on"]["redis-setup"] == {"condition": "service_completed_successfully"}
    # The file Redis reads is on a volume, read only, that redis-setup writes.
    mounts = dict(m.split(":", 1)[::-1] for m in redis["volumes"])
    volume = mounts[f"{Path(aclfile).parent}:ro"]
    setup_dir = next(m.split(":")[1] for m in setup["volumes"] if m.split(":")[0] == volume)
    script = setup["command"][0]
    assert "saga acl --export" in script
    written = re.findall(r"(?:>|\bmv \S+) (\S+)\s*$", script, re.M)
    assert written[-1] == f"{setup_dir}/{Path(aclfile).name}", script
    # What it writes: the committed file, with every user's password hashed in.
    env = {name: interpolated(value) for name, value in setup["environment"].items()}
    assert set(env) == ACL_NAMES | {"SAGA_NAMESPACE"}
    result = CliRunner().invoke(app, ["acl", "--export"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for text in (lines, USERS_ACL.read_text().splitlines()):
        assert text[0].split()[:3] == ["user", "default", "off"], text[0]
    for role in ACL_ROLES:
        digest = hashlib.sha256(env[f"SAGA_ACL_{role.upper()}_PASSWORD"].encode()).hexdigest()
        user = next(line for line in lines if line.startswith(f"user saga.{role} "))
        assert f" on #{digest} " in user, user


def test_compose_processes_log_into_redis_as_the_user_of_their_role() -> None:
    services = compose()["services"]
    passwords = services["redis-setup"]["environment"]
    roles = set()
    for name, service in saga_processes(compose()):
        role = REDIS_ROLE[service["command"][0]]
        env = service["environment"]
        url = urlsplit(interpolated(env["SAGA_REDIS_URL"]))
        assert url.username == f"{env['SAGA_NAMESPACE']}.{role}", name
        # The same variable and default as the password the ACL file got.
        source = url_password_source(env["SAGA_REDIS_URL"])
        assert source == passwords[f"SAGA_ACL_{role.upper()}_PASSWORD"], name
        roles.add(role)
    assert roles == {"coordinator", "participant"}
    # The health check logs in too (default is off), as the read-only user.
    redis = services["redis"]
    assert "--user saga.reader" in " ".join(redis["healthcheck"]["test"])
    assert redis["environment"]["REDISCLI_AUTH"] == passwords["SAGA_ACL_READER_PASSWORD"]


# -- Kubernetes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(OVERLAY))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                yield obj, container


def test_kubernetes_objects_are_valid(rendered: list[dict[str, Any]]) -> None:
    kinds = {obj["kind"] for obj in rendered}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds
    for obj in rendered:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_gives_saga_processes_only_variables_they_read(
    rendered: list[dict[str, Any]],
) -> None:
    names = {key for obj in rendered if obj["kind"] == "ConfigMap" for key in obj["data"]}
    for _, container in containers(rendered):
        names |= {entry["name"] for entry in container.get("env", [])}
    assert unknown_variables(names) == []


def secret_ref(container: dict[str, Any], name: str) -> dict[str, Any]:
    entry = next(e for e in container["env"] if e["name"] == name)
    ref: dict[str, Any] = entry["valueFrom"]["secretKeyRef"]
    return ref


def test_kubernetes_processes_log_into_redis_as_the_user_of_their_role(
    rendered: list[dict[str, Any]],
) -> None:
    config = next(obj["data"] for obj in rendered if obj["kind"] == "ConfigMap")
    secret = next(obj for obj in rendered if obj["kind"] == "Secret")
    seen = set()
    for deployment, container in containers(rendered):
        role = REDIS_ROLE[container["args"][0]]
        ref = secret_ref(container, "SAGA_REDIS_URL")
        assert ref["name"] == secret["metadata"]["name"]
        url = urlsplit(base64.b64decode(secret["data"][ref["key"]]).decode())
        assert url.username == f"{config['SAGA_NAMESPACE']}.{role}", deployment["metadata"]
        assert url.password, deployment["metadata"]["name"]
        # Signing: each process its own principal's keyring; optional, so the
        # Secret may leave it out (unsigned). Sealing keys: the coordinator only.
        env = {e["name"] for e in container["env"]}
        principal = "coordinator" if role == "coordinator" else service_of(container)
        signing = secret_ref(container, "SAGA_SIGNING_KEYS")
        assert (signing["key"], signing["optional"]) == (f"{principal}-signing-keys", True)
        assert ("SAGA_DATA_KEYS" in env) == (role == "coordinator")
        if role == "coordinator":
            assert secret_ref(container, "SAGA_DATA_KEYS")["optional"] is True
        seen.add(role)
    assert seen == {"coordinator", "participant"}


def service_of(container: dict[str, Any]) -> str:
    return str(next(e["value"] for e in container["env"] if e["name"] == "ORDERS_SERVICES"))


def test_kubernetes_probes_and_scraping_match_the_server(rendered: list[dict[str, Any]]) -> None:
    config = next(obj["data"] for obj in rendered if obj["kind"] == "ConfigMap")
    port = http_address(config["SAGA_HTTP"])[1]
    served = served_paths()
    for deployment, container in containers(rendered):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert (live["path"], ready["path"]) == ("/livez", "/readyz")
        for probe in (live, ready):
            assert ports.get(probe["port"], probe["port"]) == port
            assert probe["path"] in served
        scrape = deployment["spec"]["template"]["metadata"]["annotations"]
        assert scrape["prometheus.io/scrape"] == "true"
        assert int(scrape["prometheus.io/port"]) == port
        assert scrape["prometheus.io/path"] in served
    service = next(obj for obj in rendered if obj["kind"] == "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [port]


def test_the_coordinator_deployment_stops_gently_and_safely(
    rendered: list[dict[str, Any]],
) -> None:
    coordinator = next(
        o
        for o in rendered
        if o["metadata"]["name"] == "saga-coordinator" and o["kind"] == "Deployment"
    )
    spec = coordinator["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    budget = next(o for o in rendered if o["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


# -- the image ---------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_user() -> None:
    steps = dockerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("python:3.11-slim") for s in stages)
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final = steps[last:]
    assert any(w == "COPY" and a.startswith("--from=") for w, a in final)
    assert any(w == "RUN" and re.search(r"pip install .*\.whl", a) for w, a in final)
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["saga"]') in final


def test_dockerfile_health_check_asks_the_server_where_it_listens() -> None:
    steps = dockerfile()
    env = " ".join(args for word, args in steps if word == "ENV")
    names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", env))
    assert unknown_variables(names) == []
    port = http_address(re.search(r"SAGA_HTTP=(\S+)", env).group(1))[1]  # type: ignore[union-attr]
    check = next(args for word, args in steps if word == "HEALTHCHECK")
    url = urlsplit(re.search(r"http://[^'\"]+", check).group())  # type: ignore[union-attr]
    assert (url.port, url.path) == (port, "/livez")
    assert url.path in served_paths()
    assert any(word == "EXPOSE" and args == str(port) for word, args in steps)


# -- RabbitMQ ----------------------------------------------------------------------


def test_definitions_are_what_saga_topology_prints_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGA_DELIVERY_LIMIT", raising=False)
    result = CliRunner().invoke(app, TOPOLOGY_ARGS)
    assert result.exit_code == 0, result.output
    assert json.loads(DEFINITIONS.read_text()) == json.loads(result.stdout), (
        "deploy/rabbitmq/definitions.json is stale: regenerate it with saga "
        + " ".join(TOPOLOGY_ARGS)
    )
