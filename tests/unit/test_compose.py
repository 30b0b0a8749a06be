"""The container stack, checked without a container engine.

compose.yaml is rendered by Debian's `docker-compose` (1.29: it interpolates and
validates without an engine), validated against the Compose Specification schema in
../shared/compose-spec/, and held to our rules per profile. The Dockerfile,
.dockerignore, .env.example and the per-environment configuration files are checked as
text. (That those configuration files load in real servers is tests/integration/
test_deploy.py.)
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from logkeep.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
# The project's shared copy when the checkout sits beside it, else the one in tests/data.
SHARED_SCHEMA = ROOT.parent / "shared" / "compose-spec" / "compose-spec.json"
SCHEMA_FILE = SHARED_SCHEMA if SHARED_SCHEMA.is_file() else ROOT / "tests/data/compose-spec.json"
DOCKER_COMPOSE = shutil.which("docker-compose")
PROFILES = ("dev", "test", "prod")
SECRETS = (
    "POSTGRES_PASSWORD",
    "LOGKEEP_DB_PASSWORD",
    "LOGKEEP_APP_DB_PASSWORD",
    "LOGKEEP_REDIS_PASSWORD",
    "REDIS_ADMIN_PASSWORD",
    "LOGKEEP_SECRET_KEY",
    "LOGKEEP_ADMIN_PASSWORD",
)
# Values no file may contain: they can only come from the environment we render with.
SENTINELS = {name: f"sentinel{i}x{name.lower().replace('_', '')}" for i, name in enumerate(SECRETS)}
PGDATA = "/var/lib/postgresql/data"

needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not installed (apt-get install -y docker-compose): "
    "compose.yaml was not rendered",
)


def compose_env(**values: str) -> dict[str, str]:
    """This process's environment without any secret or LOGKEEP_* variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("LOGKEEP_")}
    env.update(values)
    return env


def run_compose(
    profile: str, env: dict[str, str], env_file: Path
) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE is not None
    return subprocess.run(
        [
            DOCKER_COMPOSE,
            # An empty env file: a developer's own .env must not fill in what we leave out.
            "--env-file", str(env_file),
            "--project-directory", str(ROOT),
            "--file", str(COMPOSE_FILE),
            "--profile", profile,
            "config",
        ],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def rendered(empty_env_file: Path) -> dict[str, dict[str, Any]]:
    """Each profile's `docker-compose --profile P config`, with sentinel secrets."""
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    documents = {}
    for profile in PROFILES:
        result = run_compose(profile, compose_env(**SENTINELS), empty_env_file)
        assert result.returncode == 0, result.stderr
        documents[profile] = yaml.safe_load(result.stdout)
    return documents


def active(document: dict[str, Any], profile: str) -> dict[str, Any]:
    """What `--profile P up` would run. docker-compose 1.29's `config` prints every service
    whatever the profile (profiles apply at `up`), so select them here as Compose does:
    services of that profile or of none, with the networks and volumes they use."""
    services = {
        name: spec
        for name, spec in document["services"].items()
        if not spec.get("profiles") or profile in spec["profiles"]
    }
    networks = {n for spec in services.values() for n in spec.get("networks", {})}
    volumes = {
        mount["source"]
        for spec in services.values()
        for mount in mounts(spec)
        if mount["type"] == "volume"
    }
    result = {k: v for k, v in document.items() if k not in ("services", "networks", "volumes")}
    result["services"] = services
    result["networks"] = {k: v for k, v in document.get("networks", {}).items() if k in networks}
    result["volumes"] = {k: v for k, v in document.get("volumes", {}).items() if k in volumes}
    return result


def mounts(service: dict[str, Any]) -> list[dict[str, str]]:
    """A service's volumes in long form (type, source, target), whichever syntax."""
    result = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            result.append({k: str(entry.get(k, "")) for k in ("type", "source", "target")})
            continue
        source, target, *_ = entry.split(":")
        kind = "bind" if source.startswith(("/", ".")) else "volume"
        result.append({"type": kind, "source": source, "target": target})
    return result


def published(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(host address, host port, protocol) for each published port, whichever syntax."""
    result = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            host_ip = str(entry.get("host_ip", ""))
            result.append((host_ip, int(entry["published"]), str(entry.get("protocol", "tcp"))))
            continue
        spec, _, protocol = str(entry).partition("/")
        *host, _container = spec.split(":")
        address = host[0] if len(host) == 2 else ""
        result.append((address, int(host[-1]), protocol or "tcp"))
    return result


def role(service_name: str) -> str:
    return service_name.rsplit("-", 1)[0]


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def stack(rendered: dict[str, dict[str, Any]], profile: str) -> dict[str, Any]:
    return active(rendered[profile], profile)


# ---------------------------------------------------------------------------------------
# Rendering and the schema


@needs_compose
def test_each_profile_validates_against_the_compose_specification(
    rendered: dict[str, dict[str, Any]],
) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    for profile in PROFILES:
        for document in (rendered[profile], active(rendered[profile], profile)):
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(document)
            ]
            assert errors == [], profile


def test_the_schema_rejects_what_compose_would_reject() -> None:
    """The validation above can fail: a misspelt key is an error."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    bad = {"services": {"api": {"image": "x", "helthcheck": {"test": ["CMD", "true"]}}}}
    assert list(validator.iter_errors(bad))


# ---------------------------------------------------------------------------------------
# Rules, per profile

EXPECTED_ROLES = {
    "dev": {"postgres", "redis", "migrate", "api", "worker", "syslog", "adminer"},
    "test": {"postgres", "redis", "migrate", "api", "worker", "syslog"},
    "prod": {"postgres", "redis", "migrate", "api", "worker", "syslog", "proxy"},
}


@needs_compose
def test_each_profile_runs_its_own_services(stack: dict[str, Any], profile: str) -> None:
    names = set(stack["services"])
    assert {role(n) for n in names} == EXPECTED_ROLES[profile]
    assert all(n.endswith(f"-{profile}") for n in names)


@needs_compose
def test_long_running_services_have_healthchecks_and_restart(
    stack: dict[str, Any], profile: str
) -> None:
    for name, spec in stack["services"].items():
        if role(name) == "migrate":
            continue
        healthcheck = spec.get("healthcheck", {})
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test"), name
        assert spec.get("restart") == "unless-stopped", name


@needs_compose
def test_migrate_is_one_shot_and_gates_the_app(stack: dict[str, Any], profile: str) -> None:
    services = stack["services"]
    migrate = services[f"migrate-{profile}"]
    assert migrate["restart"] == "no"
    # The image's HEALTHCHECK (the API's) does not apply; 1.29 renders `disable` as NONE.
    assert migrate["healthcheck"] in ({"disable": True}, {"test": ["NONE"]})
    script = " ".join(migrate["entrypoint"])
    assert "logkeep db migrate" in script
    assert f"logkeep db seed --env {profile}" in script
    assert migrate["depends_on"] == {
        f"postgres-{profile}": {"condition": "service_healthy"},
        f"redis-{profile}": {"condition": "service_healthy"},
    }
    # The schema's owner migrates; the long-running services may only read and write rows.
    assert migrate["environment"]["LOGKEEP_DATABASE_URL"].startswith("postgresql://logkeep:")
    for app in ("api", "worker", "syslog"):
        url = services[f"{app}-{profile}"]["environment"]["LOGKEEP_DATABASE_URL"]
        assert url.startswith("postgresql://logkeep_app:")
        depends = services[f"{app}-{profile}"]["depends_on"]
        assert depends[f"migrate-{profile}"] == {"condition": "service_completed_successfully"}
        assert services[f"{app}-{profile}"]["environment"]["LOGKEEP_ENV"] == profile


ALLOWED_PORTS = {
    "dev": {"api": {8000}, "syslog": {5514}, "adminer": {8080}},
    "test": {"api": {18000}, "syslog": {15514}},
    # prod: HTTP only through the TLS proxy; the API itself is not published.
    "prod": {"proxy": {443, 80}, "syslog": {5514}},
}


@needs_compose
def test_only_the_http_entry_and_syslog_are_published(stack: dict[str, Any], profile: str) -> None:
    ports = {role(n): published(s) for n, s in stack["services"].items() if s.get("ports")}
    assert {r: {p for _, p, _ in entries} for r, entries in ports.items()} == (
        ALLOWED_PORTS[profile]
    )
    assert {proto for _, _, proto in ports["syslog"]} == {"tcp", "udp"}
    if profile == "prod":
        # HTTPS (and HTTP/3 over UDP) on 443; port 80 only redirects and answers ACME.
        assert set(ports["proxy"]) == {("", 443, "tcp"), ("", 443, "udp"), ("", 80, "tcp")}
    if profile != "prod":
        # Developers' and CI's stacks answer on this machine only.
        assert {address for entries in ports.values() for address, _, _ in entries} == {"127.0.0.1"}


@needs_compose
def test_data_stays_on_an_internal_network(stack: dict[str, Any], profile: str) -> None:
    data, edge, web = f"{profile}-data", f"{profile}-edge", f"{profile}-web"
    assert stack["networks"][data].get("internal") is True
    assert not stack["networks"][edge].get("internal")
    for name, spec in stack["services"].items():
        networks = set(spec["networks"])
        assert networks <= {data, edge, web}, name  # never another profile's network
        if role(name) == "proxy":
            # The proxy reaches the API only; never PostgreSQL or Redis.
            assert networks == {edge, web}, name
            continue
        assert data in networks, name
        if role(name) in ("postgres", "redis"):
            assert networks == {data}, name
            # The API and workers reach them by role, whatever the profile.
            assert spec["networks"][data]["aliases"] == [role(name)]
        if spec.get("ports"):
            assert edge in networks, name  # an internal network publishes nothing


@needs_compose
def test_data_lives_in_named_volumes_or_tmpfs(stack: dict[str, Any], profile: str) -> None:
    services = stack["services"]
    expected = {"dev": {"postgres": PGDATA}, "prod": {"postgres": PGDATA, "redis": "/data"}}
    for store in ("postgres", "redis"):
        spec = services[f"{store}-{profile}"]
        volumes = {m["target"]: m["source"] for m in mounts(spec) if m["type"] == "volume"}
        if profile == "test":
            assert volumes == {}
            assert {"postgres": PGDATA, "redis": "/data"}[store] in spec["tmpfs"]
        elif store in expected[profile]:
            source = volumes[expected[profile][store]]
            assert source in stack["volumes"], f"{store}: {source} is not a named volume"
        else:
            assert volumes == {}  # dev Redis keeps nothing
    for name, spec in services.items():
        volumes = {m["target"]: m["source"] for m in mounts(spec) if m["type"] == "volume"}
        if role(name) == "proxy":
            # Its certificates and ACME account survive restarts (rate limits otherwise).
            assert set(volumes) == {"/data"}, name
            assert volumes["/data"] in stack["volumes"], name
        elif role(name) not in ("postgres", "redis"):
            assert volumes == {}, name


def conf_value(path: Path, key: str) -> str:
    """A setting from a postgresql.conf or redis.conf (`key = 'v'` or `key v`)."""
    for line in path.read_text().splitlines():
        match = re.match(rf"^{re.escape(key)}\s*(?:=\s*|\s+)(.+?)\s*(#.*)?$", line)
        if match:
            return match[1].strip("'\"")
    raise KeyError(f"{key} is not set in {path}")


@needs_compose
def test_each_store_gets_its_profiles_configuration(stack: dict[str, Any], profile: str) -> None:
    services = stack["services"]
    for name, spec in services.items():
        for mount in mounts(spec):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name} mounts missing {mount['source']}"
    postgres = services[f"postgres-{profile}"]
    binds = {m["target"]: Path(m["source"]) for m in mounts(postgres) if m["type"] == "bind"}
    conf = binds["/etc/postgresql/postgresql.conf"]
    assert conf == ROOT / "deploy" / "postgres" / f"{profile}.conf"
    assert "config_file=/etc/postgresql/postgresql.conf" in postgres["command"]
    assert conf_value(conf, "hba_file") in binds  # the configuration's pg_hba.conf is there
    assert binds["/docker-entrypoint-initdb.d"] == ROOT / "deploy" / "postgres" / "initdb"

    redis = services[f"redis-{profile}"]
    binds = {m["target"]: Path(m["source"]) for m in mounts(redis) if m["type"] == "bind"}
    conf = binds["/usr/local/etc/redis/redis.conf"]
    assert conf == ROOT / "deploy" / "redis" / f"{profile}.conf"
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert redis["entrypoint"][-1] in binds
    # The ACL file (passwords) is written to a tmpfs, never to the data volume.
    assert str(Path(conf_value(conf, "aclfile")).parent) in redis["tmpfs"]


@needs_compose
def test_official_images_pinned_to_the_tested_versions(stack: dict[str, Any], profile: str) -> None:
    """test_deploy.py loads the configuration files in PostgreSQL 15 and Redis 7.0."""
    assert stack["services"][f"postgres-{profile}"]["image"].startswith("postgres:15")
    assert stack["services"][f"redis-{profile}"]["image"].startswith("redis:7.0")
    if profile == "dev":
        assert stack["services"]["adminer-dev"]["image"].startswith("adminer:")
    if profile == "prod":
        # A minor release pinned; the Caddyfile is validated below by Debian's Caddy 2.6
        # and uses nothing newer.
        assert re.fullmatch(
            r"caddy:2\.\d+(\.\d+)?-alpine", stack["services"]["proxy-prod"]["image"]
        )


# ---------------------------------------------------------------------------------------
# Secrets


def iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)
    elif isinstance(value, str):
        yield value


def required_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+):\?[^}]+\}", COMPOSE_FILE.read_text()))


def test_secrets_come_from_the_environment_and_are_required() -> None:
    assert required_variables() == set(SECRETS)
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, spec in raw["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_URL$", key):
                # A literal here would be a secret in the repository.
                assert re.search(r"\$\{[A-Z_]+:\?", str(value)), f"{name}: {key}={value}"


@needs_compose
def test_secrets_appear_only_in_environments(rendered: dict[str, dict[str, Any]]) -> None:
    for profile, document in rendered.items():
        for name, spec in document["services"].items():
            elsewhere = {k: v for k, v in spec.items() if k != "environment"}
            leaked = [s for s in iter_strings(elsewhere) for v in SENTINELS.values() if v in s]
            assert leaked == [], f"{profile}/{name}"


@needs_compose
@pytest.mark.parametrize("missing", SECRETS)
def test_a_missing_secret_stops_compose_with_its_name(missing: str, empty_env_file: Path) -> None:
    values = {k: v for k, v in SENTINELS.items() if k != missing}
    result = run_compose("prod", compose_env(**values, **{missing: ""}), empty_env_file)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_env_example_lists_every_secret_without_a_value() -> None:
    example = (ROOT / ".env.example").read_text()
    assignments = dict(
        line.split("=", 1) for line in example.splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    assert set(assignments) == required_variables()
    assert set(assignments.values()) == {""}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------------------------------
# The image


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            result.append((instruction.upper(), args.strip()))
    return result


def test_image_is_multi_stage_slim_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    stages = [args for instruction, args in instructions if instruction == "FROM"]
    assert len(stages) >= 2
    assert any(i == "COPY" and args.startswith("--from=build") for i, args in instructions)
    base = next(args.split("=", 1)[1] for i, args in instructions if i == "ARG")
    assert re.match(r"python:3\.\d+-slim", base)
    runtime = instructions[max(n for n, (i, _) in enumerate(instructions) if i == "FROM") :]
    users = [args for i, args in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = " ".join(args for i, args in runtime if i == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["logkeep"]') in runtime
    python = tuple(int(n) for n in re.findall(r"python:(\d+)\.(\d+)", base)[0])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.findall(r"(\d+)\.(\d+)", requires)[0])
    assert python >= minimum


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent directory decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, cleaned) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_data_venvs_and_tests_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    left_out = [
        ".venv/bin/python",
        ".logkeep/postgres/pgdata/PG_VERSION",
        "tests/conftest.py",
        ".env",
        ".git/HEAD",
        "bench/run.py",
        "src/logkeep/cli/__pycache__/common.pyc",
    ]
    for path in left_out:
        assert docker_ignored(path, patterns), path
    kept = [
        "pyproject.toml",
        "README.md",
        "src/logkeep/cli/__init__.py",
        "src/logkeep/db/schema.sql",
    ]
    for path in kept:
        assert not docker_ignored(path, patterns), path


# ---------------------------------------------------------------------------------------
# Configuration files


CONFIG_FILES = sorted((ROOT / "deploy" / "postgres").glob("*.conf")) + sorted(
    (ROOT / "deploy" / "redis").glob("*.conf")
)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_setting_says_why(path: Path) -> None:
    """Each group of settings (lines without a blank between them) opens with a comment."""
    group: list[str] = []
    for line in [*path.read_text().splitlines(), ""]:
        if line.strip():
            group.append(line)
            continue
        if any(not g.startswith("#") for g in group):
            assert group[0].startswith("#"), f"{path.name}: no comment above {group[0]!r}"
        group = []


def test_every_profile_has_its_configuration_files() -> None:
    for profile in PROFILES:
        assert (ROOT / "deploy" / "postgres" / f"{profile}.conf").is_file()
        assert (ROOT / "deploy" / "redis" / f"{profile}.conf").is_file()


# ---------------------------------------------------------------------------------------
# The HTTPS proxy in front of the prod API (deploy/caddy/Caddyfile)

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy")
OPENSSL = shutil.which("openssl")
needs_caddy = pytest.mark.skipif(
    CADDY is None,
    reason="caddy is not installed (apt-get install -y caddy): the proxy's Caddyfile was "
    "not validated",
)


def caddyfile_default(variable: str) -> str:
    """The default the Caddyfile gives `{$VARIABLE:default}`."""
    match = re.search(r"\{\$" + variable + r":([^}]+)\}", CADDYFILE.read_text())
    assert match, f"{variable} has no default in {CADDYFILE}"
    return match[1]


@needs_compose
def test_prod_api_is_reached_only_through_the_proxy(rendered: dict[str, dict[str, Any]]) -> None:
    stack = active(rendered["prod"], "prod")
    api, proxy = stack["services"]["api-prod"], stack["services"]["proxy-prod"]
    assert "ports" not in api
    assert set(api["networks"]) == {"prod-data", "prod-web"}
    web = stack["networks"]["prod-web"]
    assert web.get("internal") is True  # the API has no route out through it
    (pool,) = web["ipam"]["config"]
    subnet, handed_out = (
        ipaddress.ip_network(pool["subnet"]),
        ipaddress.ip_network(pool["ip_range"]),
    )
    address = ipaddress.ip_address(proxy["networks"]["prod-web"]["ipv4_address"])
    # Fixed, and outside what Docker gives other containers (an API replica, say).
    assert address in subnet
    assert address not in handed_out
    # Only the proxy's X-Forwarded-For / -Proto are believed, and logkeep accepts the value.
    trusted = api["environment"]["LOGKEEP_TRUSTED_PROXIES"]
    assert trusted == str(address)
    assert Settings(_env_file=None, trusted_proxies=trusted).trusted_proxies == trusted
    # The proxy forwards to the API's service name and the port it serves on.
    host, port = proxy["environment"]["LOGKEEP_UPSTREAM"].rsplit(":", 1)
    assert host == "api-prod"
    assert api["command"][api["command"].index("--port") + 1] == port
    assert proxy["depends_on"] == {"api-prod": {"condition": "service_healthy"}}
    # Its configuration is ours; certificates (files mode) where the Caddyfile looks.
    binds = {m["target"]: Path(m["source"]) for m in mounts(proxy) if m["type"] == "bind"}
    assert binds["/etc/caddy/Caddyfile"] == CADDYFILE
    for variable in ("LOGKEEP_PROXY_CERT_FILE", "LOGKEEP_PROXY_KEY_FILE"):
        assert str(Path(caddyfile_default(variable)).parent) in binds
    # Hardened like logkeep's containers, plus the one capability to bind 80 and 443.
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    assert proxy["cap_add"] == ["NET_BIND_SERVICE"]
    assert proxy["security_opt"] == ["no-new-privileges:true"]
    # The healthcheck asks the Caddyfile's loopback health site.
    health = f"http://127.0.0.1:{caddyfile_default('LOGKEEP_PROXY_HEALTH_PORT')}/healthz"
    assert health in proxy["healthcheck"]["test"]


def caddy_env(values: dict[str, str], home: Path) -> dict[str, str]:
    """Only `values`, and a home of its own for Caddy's storage."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        **values,
    }


def proxy_environment(rendered: dict[str, dict[str, Any]]) -> dict[str, str]:
    """proxy-prod's environment as compose renders it, for a real domain name."""
    proxy = active(rendered["prod"], "prod")["services"]["proxy-prod"]
    env = {k: str(v) for k, v in proxy["environment"].items()}
    return env | {"LOGKEEP_DOMAIN": "logs.example.com"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.skip("openssl is not installed: no certificate to validate the proxy with")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=logs.example.com",
         "-addext", "subjectAltName=DNS:logs.example.com", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def caddy(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert CADDY is not None
    return subprocess.run(
        [CADDY, command, "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@needs_compose
@needs_caddy
@pytest.mark.parametrize("mode", ["acme", "files", "internal"])
def test_the_proxy_configuration_is_valid(
    rendered: dict[str, dict[str, Any]], mode: str, tmp_path: Path
) -> None:
    """`caddy validate` loads and provisions the whole configuration (certificate files
    included) without serving: with compose's environment and each LOGKEEP_PROXY_TLS."""
    env = proxy_environment(rendered) | {"LOGKEEP_PROXY_TLS": mode}
    if mode == "files":
        # compose mounts them on /certs; this machine has them here.
        cert, key = self_signed(tmp_path)
        env |= {"LOGKEEP_PROXY_CERT_FILE": str(cert), "LOGKEEP_PROXY_KEY_FILE": str(key)}
    result = caddy("validate", caddy_env(env, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@needs_compose
@needs_caddy
def test_the_proxy_validation_can_fail(rendered: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    env = proxy_environment(rendered)
    missing = tmp_path / "nowhere.crt"
    result = caddy(
        "validate",
        caddy_env(
            env | {"LOGKEEP_PROXY_TLS": "files", "LOGKEEP_PROXY_CERT_FILE": str(missing)},
            tmp_path,
        ),
    )
    assert result.returncode != 0
    assert str(missing) in result.stderr
    result = caddy("validate", caddy_env(env | {"LOGKEEP_PROXY_TLS": "letsencrypt"}, tmp_path))
    assert result.returncode != 0
    assert "tls-letsencrypt" in result.stderr  # an unknown mode is named


@needs_compose
@needs_caddy
def test_the_proxy_serves_the_domain_on_the_published_ports(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """What Caddy makes of the Caddyfile with compose's environment: HTTPS for the domain on
    the port compose publishes, forwarded to the API; the health site on loopback only."""
    env = proxy_environment(rendered)
    result = caddy("adapt", caddy_env(env, tmp_path))
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    http = config["apps"]["http"]
    proxy = active(rendered["prod"], "prod")["services"]["proxy-prod"]
    targets = {int(entry["target"]) for entry in proxy["ports"]}
    assert targets == {http["https_port"], http["http_port"]} == {443, 80}
    servers = list(http["servers"].values())
    site = next(s for s in servers if s["listen"] == [f":{http['https_port']}"])
    (route,) = site["routes"]
    assert route["match"] == [{"host": ["logs.example.com"]}]
    handlers = list(iter_handlers(route))
    (upstream,) = [h["upstreams"] for h in handlers if h.get("handler") == "reverse_proxy"]
    assert upstream == [{"dial": env["LOGKEEP_UPSTREAM"]}]
    health_port = caddyfile_default("LOGKEEP_PROXY_HEALTH_PORT")
    (health,) = [s for s in servers if s is not site]
    assert health["listen"] == [f"127.0.0.1:{health_port}"]
    assert config["admin"] == {"disabled": True}


def iter_handlers(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for handler in route.get("handle", []):
        yield handler
        for sub in handler.get("routes", []):
            yield from iter_handlers(sub)
