"""deploy/Dockerfile, built and run here without a Docker engine.

Debian's buildah builds the image (`--isolation chroot`, storage in a temporary
directory: overlay where the kernel allows it, else vfs) on a base that debootstrap made
from Debian 12's packages: the same Python (3.11) as `python:3.11-slim-bookworm`, passed
as `--build-arg PYTHON_IMAGE=...`, plus this machine's CA bundle and PIP_CERT so that pip
in the build reaches its index the way this machine does. Only the debootstrapped root
filesystem is cached between runs (in LOGKEEP_TEST_CACHE_DIR, default
~/.cache/logkeep-tests); the logkeep image is built from this checkout every run, so a
broken Dockerfile fails here.

The image then runs as compose runs it: as its own user (uid 10001), first compose's
prod `migrate` command, then `logkeep serve`, against PostgreSQL and Redis started with
the prod configuration files of deploy/ on loopback TCP, and /readyz must answer ready.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from logkeep.api.local import free_port
from tests.integration.test_deploy import (
    PASSWORDS,
    ConfiguredPostgres,
    ConfiguredRedis,
    migrate_command,
)

pytestmark = [
    pytest.mark.slow,
    # The first run debootstraps the base (about a minute); every run builds the image.
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).resolve().parents[2]
BUILDAH = shutil.which("buildah")
DEBOOTSTRAP = shutil.which("debootstrap")
SUITE = "bookworm"  # python:3.11-slim-bookworm's Debian
# What the Dockerfile's stages need of the python image: python (3.11) with venv.
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_IMAGE = "localhost/logkeep-test-base:bookworm"
IMAGE = "localhost/logkeep-test:latest"
IMAGE_UID = 10001  # deploy/Dockerfile's USER

if os.geteuid() != 0:
    pytestmark.append(
        pytest.mark.skip(reason="debootstrap and buildah's chroot isolation need root")
    )
elif BUILDAH is None:
    pytestmark.append(
        pytest.mark.skip(reason="buildah is not installed (apt-get install -y buildah)")
    )


def cache_dir() -> Path:
    configured = os.environ.get("LOGKEEP_TEST_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "logkeep-tests"
    base.mkdir(parents=True, exist_ok=True)
    return base


def ca_bundle() -> Path | None:
    """The CA bundle this machine's pip trusts, for pip inside the build."""
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def run_logged(argv: list[str], log: Path, timeout_s: float, **kwargs: Any) -> int:
    """Run to the end with output appended to `log`; the exit code."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=timeout_s, check=False, **kwargs,
        ).returncode  # fmt: skip


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def base_rootfs(log: Path) -> Path:
    """The debootstrapped root filesystem as a tar, made once per suite and package list
    (made under a lock: concurrent runs wait for one debootstrap)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} minbase".encode()).hexdigest()[:12]
    cache = cache_dir()
    tarball = cache / f"rootfs-{SUITE}-{key}.tar"
    with (cache / "rootfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        if DEBOOTSTRAP is None:
            pytest.skip("debootstrap is not installed (apt-get install -y debootstrap)")
        for stale in cache.glob(f"rootfs-{SUITE}-*.tar"):
            stale.unlink()  # another package list's: never used again
        work = cache / f"rootfs-{key}.work"
        shutil.rmtree(work, ignore_errors=True)  # a run killed half-way (no mounts: debootstrap
        # unmounts /proc and /sys of its target before it exits, and a plain tree follows)
        argv = [
            DEBOOTSTRAP,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(work),
        ]
        if run_logged(argv, log, timeout_s=900) != 0:
            shutil.rmtree(work, ignore_errors=True)
            pytest.skip(
                f"debootstrap could not make the base here (mirror unreachable?):\n{tail(log)}"
            )
        # Package caches are not part of an image.
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (work / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(work), "-cf", str(partial), "."],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        partial.rename(tarball)
        shutil.rmtree(work, ignore_errors=True)
        return tarball


@dataclass
class Buildah:
    """buildah with storage of its own, removed afterwards."""

    root: Path
    log: Path
    driver: str = "overlay"  # vfs copies every layer and container: slower, works anywhere

    def argv(self, *args: str) -> list[str]:
        assert BUILDAH is not None
        return [
            BUILDAH,
            "--root", str(self.root / self.driver),
            "--runroot", str(self.root / "run"),
            "--storage-driver", self.driver,
            *args,
        ]  # fmt: skip

    def can_mount(self) -> bool:
        """Whether this storage driver works here (overlay needs the kernel's consent)."""
        made = subprocess.run(
            self.argv("from", "--name", "mount-probe", "scratch"),
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if made.returncode != 0:
            return False
        mounted = subprocess.run(
            self.argv("mount", "mount-probe"), capture_output=True, check=False, timeout=60
        )
        subprocess.run(self.argv("rm", "mount-probe"), capture_output=True, check=False, timeout=60)
        return mounted.returncode == 0

    def run(self, *args: str, timeout_s: float = 600) -> int:
        return run_logged(self.argv(*args), self.log, timeout_s)

    def output(self, *args: str) -> str:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, check=True, timeout=120
        ).stdout

    def remove_storage(self) -> None:
        """Delete the storage, never through a mount a killed run may have left."""
        subprocess.run(self.argv("rm", "--all"), capture_output=True, check=False, timeout=120)
        mounted = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(self.root))
        ]
        if mounted:
            pytest.fail(f"left mounted, storage kept: {mounted}")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    root = tmp_path_factory.mktemp("buildah")
    tool = Buildah(root, root / "buildah.log")
    try:
        if not tool.can_mount():
            tool.remove_storage()
            tool = Buildah(root, root / "buildah.log", driver="vfs")
        # Can buildah run here at all (storage, chroot)? If not, say why instead of failing.
        probe = subprocess.run(tool.argv("info"), capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            pytest.skip(f"buildah cannot run here: {probe.stderr.strip()[-500:]}")
        yield tool
    finally:
        tool.remove_storage()


@pytest.fixture(scope="module")
def base_image(buildah: Buildah) -> str:
    """The debootstrapped Debian as the build's PYTHON_IMAGE."""
    context = buildah.root / "base-context"
    context.mkdir()
    tarball = base_rootfs(buildah.log)
    try:
        os.link(tarball, context / "rootfs.tar")
    except OSError:  # another file system
        shutil.copyfile(tarball, context / "rootfs.tar")
    lines = ["FROM scratch", "ADD rootfs.tar /"]
    bundle = ca_bundle()
    if bundle is not None:
        shutil.copyfile(bundle, context / "ca-certificates.crt")
        lines += [
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        ]
    lines.append('CMD ["python3"]')
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    code = buildah.run(
        "bud", "--isolation", "chroot", "--layers=false", "-t", BASE_IMAGE, str(context)
    )
    assert code == 0, f"the base image did not build:\n{tail(buildah.log)}"
    (context / "rootfs.tar").unlink()
    return BASE_IMAGE


@dataclass(frozen=True)
class Built:
    image: str
    seconds: float


@pytest.fixture(scope="module")
def image(buildah: Buildah, base_image: str) -> Built:
    """deploy/Dockerfile, built from this checkout (its .dockerignore applies)."""
    started = time.monotonic()
    code = buildah.run(
        "bud", "--isolation", "chroot", "--format", "docker", "--layers=false",
        "--build-arg", f"PYTHON_IMAGE={base_image}",
        "-f", str(ROOT / "deploy" / "Dockerfile"),
        "-t", IMAGE,
        str(ROOT),
    )  # fmt: skip
    assert code == 0, f"deploy/Dockerfile did not build:\n{tail(buildah.log)}"
    return Built(IMAGE, time.monotonic() - started)


@pytest.fixture(scope="module")
def container(buildah: Buildah, image: Built) -> Iterator[str]:
    """A working container of the image, for every run below (each `buildah run` is a
    new process tree on the image's files; nothing else is shared between them)."""
    name = buildah.output("from", "--pull-never", "--name", "logkeep", image.image).strip()
    try:
        yield name
    finally:
        buildah.run("rm", name)


def test_the_image_runs_logkeep_as_its_own_user(
    buildah: Buildah, image: Built, container: str
) -> None:
    print(f"logkeep image built in {image.seconds:.1f}s")
    inspected = json.loads(buildah.output("inspect", "--type", "image", image.image))
    config = inspected["OCIv1"]["config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["Entrypoint"] == ["logkeep"]
    assert config["Cmd"] == ["serve"]
    assert "/healthz" in " ".join(inspected["Docker"]["config"]["Healthcheck"]["Test"])
    probe = subprocess.run(
        buildah.argv("run", "--isolation", "chroot", container, "--", "sh", "-c",
                     "id -u; logkeep version; ls /app | wc -l; "
                     "python -c 'import pgserver' 2>&1 | tail -1"),
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    uid, version, files_in_workdir, pgserver = probe.stdout.splitlines()
    assert uid == str(IMAGE_UID)
    assert version.strip()
    assert files_in_workdir == "0"  # no .env or anything else baked into the working dir
    assert "No module named 'pgserver'" in pgserver  # the embedded servers stay out


@pytest.fixture
def prod_stores(short_tmp: Path) -> Iterator[tuple[ConfiguredPostgres, ConfiguredRedis]]:
    """PostgreSQL and Redis with deploy/'s prod files, on loopback TCP: the container runs
    as uid 10001, which may not enter the test's socket directories."""
    postgres = ConfiguredPostgres(short_tmp / "pg", "prod")
    store = ConfiguredRedis(short_tmp / "redis", "prod", tcp_port=free_port())
    try:
        postgres.initialise()
        store.start()
        yield postgres, store
    finally:
        store.stop()
        postgres.stop()


def run_in(buildah: Buildah, name: str, env: dict[str, str], command: list[str]) -> list[str]:
    """`buildah run` with the image's user, working directory and PATH, sharing this
    machine's network (chroot isolation), and only `env` added."""
    flags = [item for key, value in env.items() for item in ("--env", f"{key}={value}")]
    return buildah.argv("run", "--isolation", "chroot", *flags, name, "--", *command)


def compose_env(postgres: ConfiguredPostgres, store: ConfiguredRedis, role: str) -> dict[str, str]:
    """What compose.yaml gives the prod containers, with this test's addresses."""
    return {
        "LOGKEEP_ENV": "prod",
        "LOGKEEP_DATABASE_URL": postgres.url(role),
        "LOGKEEP_REDIS_URL": store.tcp_url(),
        "LOGKEEP_SECRET_KEY": PASSWORDS["LOGKEEP_SECRET_KEY"],
        "LOGKEEP_ADMIN_PASSWORD": PASSWORDS["LOGKEEP_ADMIN_PASSWORD"],
    }


@pytest.fixture
async def serving() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """`buildah run` processes, each in its own process group, stopped afterwards."""
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for process in started:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 45)
                except TimeoutError:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()


async def test_the_image_migrates_and_serves_against_the_prod_stores(
    buildah: Buildah,
    container: str,
    prod_stores: tuple[ConfiguredPostgres, ConfiguredRedis],
    serving: list[asyncio.subprocess.Process],
    short_tmp: Path,
) -> None:
    postgres, store = prod_stores
    log = short_tmp / "container.log"
    # compose's migrate-prod, as the schema's owner.
    env = compose_env(postgres, store, "logkeep")
    argv = run_in(buildah, container, env, migrate_command("prod"))
    migrate = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(migrate.communicate(), 300)
    assert migrate.returncode == 0, output.decode(errors="replace")

    port = free_port()
    with log.open("ab") as out:
        # api-prod's command, on this test's port, as the app's role.
        command = ["logkeep", "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv = run_in(buildah, container, compose_env(postgres, store, "logkeep_app"), command)
        api = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
        serving.append(api)
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(timeout=3) as client:
            while True:
                if api.returncode is not None:
                    pytest.fail(f"logkeep serve exited with {api.returncode}:\n{tail(log)}")
                try:
                    ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"no answer in 90 s:\n{tail(log)}"
                    await asyncio.sleep(0.2)
                    continue
                break
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready"}
        # Stopped like `docker stop`: SIGTERM, then it exits by itself.
        os.killpg(api.pid, signal.SIGTERM)
        assert await asyncio.wait_for(api.wait(), 45) is not None
