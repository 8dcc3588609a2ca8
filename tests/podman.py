"""A generated project's image, built from its own Dockerfile with podman and run for real.

Nothing is pulled from a registry. The images the Dockerfile names (`python:X.Y-slim` and
uv's image) are replaced, in podman's local storage only, by stand-ins made on this machine:

- a Debian bookworm root file system from `debootstrap --variant=minbase` (Debian's packages),
- plus a CPython X.Y of this machine, copied in at the path it was built for, and this machine's
  CA bundle as the image's, since package downloads may pass a TLS-inspecting proxy here,
- and uv's image as this environment's uv binary alone.

They carry the label `STAND_IN_LABEL`. A real `python:X.Y-slim` found in the storage is used as
it is. The Dockerfile the user gets is built unchanged. Where podman or debootstrap is missing
the checks skip, except in CI, which installs them (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from bakery import load_hook, one_at_a_time, python_version_of

STAND_IN_LABEL = "org.fastapi-expert-template.stand-in"
DEBIAN_BASE = "localhost/fastapi-expert-template/debian:bookworm"
# What a CPython of pyenv's, uv's or a distribution's build links to, beyond the C library.
DEBIAN_PACKAGES = (
    "ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libexpat1,"
    "libuuid1,libncursesw6,libreadline8,libgdbm6"
)
# The runtime that works here (crun fails on rlimits and the cgroup layout), with ulimits.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""
API = "/api/v1"


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} must be installed in CI: .ci/run installs it")
        pytest.skip(f"{tool} is not installed: the image is built and run with podman")
    return found


@dataclass(frozen=True)
class Podman:
    executable: str
    env: Mapping[str, str]

    def run(
        self, *args: str, timeout: float = 300, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.executable, *args],
            input=stdin.decode("latin-1") if stdin is not None else None,
            capture_output=True,
            text=True,
            env=dict(self.env),
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"podman {' '.join(args[:3])} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def label(self, image: str) -> str | None:
        labels = json.loads(
            self.run("image", "inspect", "--format", "{{json .Labels}}", image).stdout
        )
        value = (labels or {}).get(STAND_IN_LABEL)
        return str(value) if value is not None else None


def podman(state_dir: Path) -> Podman:
    executable = require("podman")
    state_dir.mkdir(parents=True, exist_ok=True)
    conf = state_dir / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    return Podman(executable, {**os.environ, "CONTAINERS_CONF": str(conf)})


def _debian_base(tool: Podman, work: Path) -> None:
    if tool.exists(DEBIAN_BASE):
        return
    debootstrap = require("debootstrap")
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("debootstrap needs root to make the stand-in base image")
    rootfs = work / "rootfs"
    made = subprocess.run(
        [debootstrap, "--variant=minbase", f"--include={DEBIAN_PACKAGES}", "bookworm", rootfs],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    tool.run("import", "--change", f"LABEL {STAND_IN_LABEL}=debian", str(archive), DEBIAN_BASE)
    shutil.rmtree(rootfs, ignore_errors=True)
    archive.unlink()


def local_cpython(version: str) -> Path:
    """The installation prefix of a CPython `version` on this machine that can be copied."""
    # Found as the post-gen hook finds the project's Python: PATH, pyenv, uv.
    candidates = [load_hook("post_gen_project").find_python(version)]
    for candidate in filter(None, candidates):
        if python_version_of(candidate) != version:
            continue
        prefix = subprocess.run(
            [candidate, "-c", "import sys; print(sys.base_prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if prefix not in ("/usr", "/usr/local", "/"):  # a distribution's: not one tree
            return Path(prefix)
    if os.environ.get("CI"):
        pytest.fail(f"no CPython {version} installed in a prefix of its own for the stand-in")
    pytest.skip(f"no CPython {version} in a prefix of its own (pyenv, uv) for the stand-in")


def _python_stand_in(tool: Podman, work: Path, image: str, version: str) -> None:
    if tool.exists(image):
        return  # ours from an earlier run, or the real one: both build the Dockerfile
    prefix = local_cpython(version)
    context = work / "python"
    context.mkdir()
    with tarfile.open(context / "python.tar", "w") as tar:
        tar.add(
            prefix,
            arcname=str(prefix).lstrip("/"),
            filter=lambda member: None if f"/python{version}/test/" in member.name else member,
        )
    shutil.copyfile(_ca_bundle(), context / "ca.crt")
    parents = [str(parent) for parent in reversed(prefix.parents) if str(parent) != "/"]
    (context / "Containerfile").write_text(
        f"""FROM {DEBIAN_BASE}
ADD python.tar /
COPY ca.crt /etc/ssl/certs/ca-certificates.crt
RUN chmod 755 {" ".join(parents) or "/"} \\
    && ln -s {prefix}/bin/python{version} /usr/local/bin/python{version} \\
    && ln -s python{version} /usr/local/bin/python3 \\
    && ln -s python{version} /usr/local/bin/python \\
    && python -c "import ssl, sqlite3, ctypes, zlib"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
LABEL {STAND_IN_LABEL}="python:{version}-slim"
CMD ["python{version}"]
""",
        encoding="utf-8",
    )
    tool.run("build", "--format", "docker", "-t", image, str(context), timeout=600)


def _ca_bundle() -> Path:
    import ssl

    for name in (os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile):
        if name and Path(name).is_file():
            return Path(name)
    return Path("/etc/ssl/certs/ca-certificates.crt")


def _uv_stand_in(tool: Podman, work: Path, image: str) -> None:
    if tool.exists(image):
        return
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    assert Path(uv).exists(), "uv is missing: pip install -r requirements-dev.txt"
    context = work / "uv"
    context.mkdir()
    shutil.copy2(uv, context / "uv")
    (context / "Containerfile").write_text(
        f'FROM scratch\nCOPY uv /uv\nLABEL {STAND_IN_LABEL}="{image}"\n', encoding="utf-8"
    )
    tool.run("build", "--format", "docker", "-t", image, str(context), timeout=300)


def base_images(project: Path) -> tuple[str, list[str]]:
    """The Python version and the images the Dockerfile starts from or copies from."""
    text = (project / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    copies = re.findall(r"COPY\s+--from=(\S+)", text)
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.I))
    images = sorted({name for name in [*froms, *copies] if name not in stages})
    (python,) = {m.group(1) for name in images if (m := re.fullmatch(r"python:(.+)-slim", name))}
    return python, images


def qualified(image: str) -> str:
    """The name podman stores an image under: `python:3.12-slim` is Docker Hub's."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def stand_ins(tool: Podman, project: Path, cache: Path) -> list[str]:
    """Every image the Dockerfile names is in the local storage; returns what stands in."""
    version, images = base_images(project)
    cache.mkdir(parents=True, exist_ok=True)
    with one_at_a_time(cache / "stand-ins.lock"), tempfile.TemporaryDirectory(dir=cache) as scratch:
        work = Path(scratch)
        _debian_base(tool, work)
        for image in images:
            name = qualified(image)
            if image.startswith("python:"):
                _python_stand_in(tool, work, name, version)
            elif "astral-sh/uv" in image:
                _uv_stand_in(tool, work, name)
            else:
                pytest.fail(f"the Dockerfile names {image}, which has no stand-in")
    return [qualified(image) for image in images if tool.label(qualified(image)) is not None]


# --- Running the image -----------------------------------------------------------------------


def http(
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_ready(base: str, container: str, tool: Podman, within: float = 60) -> float:
    """Seconds until /health/ready answers 200; fails with the container's log otherwise."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if http(f"{base}{API}/health/ready")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        state = tool.run("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state not in ("running", "created", "configured"):
            break
        time.sleep(0.2)
    log = tool.run("logs", container, check=False)
    pytest.fail(f"the container is not ready ({state}):\n{log.stdout[-3000:]}{log.stderr[-3000:]}")


def sign_in_and_read_me(base: str, email: str, password: str) -> tuple[int, dict[str, object]]:
    """Register, log in and GET /users/me through the container's port."""
    body = json.dumps({"email": email, "password": password}).encode()
    status, created = http(
        f"{base}{API}/auth/register", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 201, created
    form = urllib.parse.urlencode({"username": email, "password": password}).encode()
    status, tokens = http(
        f"{base}{API}/auth/login",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, tokens
    return http(
        f"{base}{API}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )


def run_args(settings: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
    """`podman run` arguments of production: the root file system read-only, a tmpfs /tmp."""
    args = ["--read-only", "--tmpfs", "/tmp", *extra]
    for name, value in settings.items():
        args += ["--env", f"{name}={value}"]
    return args


@dataclass
class ImageRun:
    """What building and running the image showed."""

    stand_ins: list[str]
    build_seconds: float
    migrated: int
    ready_seconds: float
    healthcheck: int
    user: str
    root_writable: bool
    me: tuple[int, dict[str, object]]
    stop_seconds: float
    exit_code: int
    log: str

    def summary(self) -> str:
        return (
            f"stand-ins {self.stand_ins}; build {self.build_seconds:.1f} s; ready after "
            f"{self.ready_seconds:.1f} s; stopped in {self.stop_seconds:.1f} s, exit "
            f"{self.exit_code}; log tail:\n{self.log[-2500:]}"
        )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _psql(sql: str) -> None:
    result = subprocess.run(
        [require("psql"), "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def build_and_run(project: Path, answers: Mapping[str, object], work: Path) -> ImageRun:
    """Build the project's image; migrate with it; serve with it as production does (its own
    CMD, read-only root, settings from the environment); sign in through it; stop it."""
    tool = podman(work / "podman")
    cache = Path(tempfile.gettempdir()) / "fastapi-expert-template-images"
    standing_in = stand_ins(tool, project, cache)
    name = f"{project.name.replace('_', '-')}-{os.getpid()}"
    tag = f"localhost/{name}:test"
    started = time.monotonic()
    tool.run("build", "--format", "docker", "--tag", tag, str(project), timeout=900)
    build_seconds = time.monotonic() - started

    settings = {"SECRET_KEY": os.urandom(32).hex(), "ALLOWED_HOSTS": "127.0.0.1"}
    database = f"image_{name.replace('-', '_')}"
    postgresql = answers["database"] == "postgresql"
    redis = answers["use_redis"] in (True, "yes", "y", "true")
    port = _free_port()
    volumes: list[str] = []
    if postgresql or redis:
        # The host's PostgreSQL and Redis on its loopback: the container shares the host's
        # network, on ports of its own rather than the host's 8000 and 8001.
        network, publish = ["--network", "host"], []
        settings |= {"HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(_free_port())}
    else:
        network, publish = [], ["--publish", f"127.0.0.1:{port}:8000"]
    if postgresql:
        _psql(f'CREATE DATABASE "{database}"')
        settings["DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    else:
        tool.run("volume", "create", name)
        volumes = ["--volume", f"{name}:/data"]
    if redis:
        settings["REDIS_URL"] = "redis://127.0.0.1:6379/13"
    try:
        migrate = run_args(settings, [*network, *volumes])
        migrated = tool.run("run", "--rm", *migrate, tag, "alembic", "upgrade", "head", check=False)
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
        serve = run_args(settings, [*network, *publish, *volumes])
        tool.run("run", "--detach", "--name", name, *serve, tag)
        base = f"http://127.0.0.1:{port}"
        ready_seconds = wait_ready(base, name, tool)
        healthcheck = tool.run("healthcheck", "run", name, check=False).returncode
        user = tool.run("exec", name, "id", "-u").stdout.strip()
        touched = tool.run("exec", name, "touch", "/srv/app/written", check=False)
        me = sign_in_and_read_me(base, "image@example.com", "image-password-0123456789")
        stopping = time.monotonic()
        tool.run("stop", "--time", "20", name, timeout=60)
        stop_seconds = time.monotonic() - stopping
        exit_code = int(tool.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout)
        logs = tool.run("logs", name)
        return ImageRun(
            stand_ins=standing_in,
            build_seconds=build_seconds,
            migrated=migrated.returncode,
            ready_seconds=ready_seconds,
            healthcheck=healthcheck,
            user=user,
            root_writable=touched.returncode == 0,
            me=me,
            stop_seconds=stop_seconds,
            exit_code=exit_code,
            log=logs.stdout + logs.stderr,
        )
    finally:
        tool.run("rm", "--force", "--time", "0", name, check=False)
        tool.run("volume", "rm", "--force", name, check=False)
        tool.run("rmi", "--force", tag, check=False)
        if postgresql:
            _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def check_image(project: Path, answers: Mapping[str, object], work: Path) -> None:
    """The image builds from the Dockerfile as generated, and runs as production does."""
    run = build_and_run(project, answers, work)
    report = run.summary()
    assert run.healthcheck == 0, f"the image's HEALTHCHECK failed; {report}"
    assert run.user == "10001", f"runs as {run.user}; {report}"
    assert not run.root_writable, f"the root file system took a write; {report}"
    status, me = run.me
    assert (status, me.get("email")) == (200, "image@example.com"), report
    # SIGTERM from `podman stop`: a clean exit long before the SIGKILL.
    assert run.exit_code == 0, report
    assert run.stop_seconds < 15, report
    assert "Application shutdown complete." in run.log, report
    assert "Traceback" not in run.log, report
