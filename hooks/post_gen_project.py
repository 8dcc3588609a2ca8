"""Finish the generated project: trim options, write .env, install (`make install`) and test.

Cookiecutter renders this script and runs it in the project; a second run is safe. Expected
problems (no such Python, no package index) end with a warning, exit status 0 and the commands
to finish by hand; failing tests end with exit status 1."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

# The answers enter as data, never as code: ``tojson`` writes ASCII JSON with every quote and
# backslash escaped, and the raw triple-quoted string keeps it as written (an escaped quote
# cannot close it; JSON never has three bare quotes in a row) for ``json.loads``. Unrendered,
# it is still a plain string, so ruff and mypy check this file as stored.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# What each option owns. A path in a *_VARIANTS list is stored once per answer, as
# `<name>_<answer>.py` beside it; the project keeps its answer's file as `<name>.py`.
EXAMPLE_RESOURCE_DIRS = ("app/items", "tests/items")
EXAMPLE_RESOURCE_VARIANTS = (  # answers: with_items, without_items
    "app/api.py",
    "app/db/models.py",
    "migrations/versions/20261123_0900_5f3a9c2e7d41_initial_schema.py",
    "migrations/versions/20261202_0900_3c8d5e1f9a27_items_list_index.py",
)
DATABASES = ("sqlite", "postgresql")
DATABASE_VARIANTS = (
    "app/core/db_settings.py",
    "app/db/engine.py",
    "migrations/env.py",
    "tests/databases.py",
)
# SQLite is embedded: no server to lose, no pool to size, and one file cannot back several pods.
POSTGRESQL_ONLY_PATHS = (
    "tests/test_postgresql.py",
    "tests/test_outage.py",
    "tests/test_pool.py",
    "deploy/kubernetes",
)
SQLITE_ONLY_PATHS = ("tests/test_sqlite.py",)
# Rate limits counted in Redis, or in each process's memory (answers: redis, memory).
RATE_LIMIT_STORAGE_VARIANTS = ("app/core/ratelimit_settings.py",)
REDIS_FILES = ("tests/core/test_rate_limit_redis.py",)
# observability: OpenTelemetry traces, or "none" (the same module names, doing nothing).
OBSERVABILITY_VARIANTS = ("app/core/tracing.py", "app/core/tracing_settings.py")
OPENTELEMETRY_FILES = ("tests/core/test_tracing.py",)
# jobs_engine: jobs run by the service's own processes, or by Dramatiq workers via RabbitMQ.
JOBS_ENGINES = ("embedded", "dramatiq")
JOBS_ENGINE_VARIANTS = ("app/core/jobs_settings.py", "app/jobs/engine.py")
DRAMATIQ_FILES = (
    "app/jobs/broker.py",
    "app/jobs/worker.py",
    "tests/jobs/effects.py",
    "tests/jobs/test_dramatiq.py",
)
# The TCP proxy that cuts a server off on purpose, for PostgreSQL's and RabbitMQ's outage tests.
OUTAGE_PROXY = "tests/outage.py"
SKIP_INSTALL_VARIABLE = "FASTAPI_TEMPLATE_SKIP_INSTALL"
CRUFT_COMMIT_KEY = "_commit"  # an answer that cruft adds
INSTALLER_VARIABLE = "FASTAPI_TEMPLATE_INSTALLER"
VENV_NAME = ".venv"
VENV_PYTHON = Path(VENV_NAME, "bin", "python")
INSTALLED_STAMP = ".installed"  # the Makefile's: it reinstalls only when this is older
# Not passed on to the project's make and tests: an outer make's settings, and PYTHONHOME.
DROPPED_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONHOME")
OUTPUT_TAIL_LINES = 30
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


class InstallError(Exception):
    """Setting up .venv failed; ``output`` is what the installer printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def warn(*lines: str) -> None:
    print(*lines, sep="\n", file=sys.stderr)


def load_answers(raw: str) -> dict[str, Any]:
    answers = json.loads(raw)
    if not isinstance(answers, dict):
        raise TypeError("the cookiecutter context is not a JSON object")
    return answers


def as_bool(value: object) -> bool:
    """Read a yes/no answer, whether cookiecutter passed a bool or a word."""
    return value.strip().lower() in TRUE_WORDS if isinstance(value, str) else bool(value)


def remove_files(project_dir: Path, relatives: Sequence[str]) -> None:
    """Delete files and folders of the project; missing ones are fine."""
    for path in (project_dir / relative for relative in relatives):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def keep_variant(project_dir: Path, paths: Sequence[str], keep: str, names: Sequence[str]) -> None:
    """Make each `<name>_<keep>.py` the project's `<name>.py`, and delete the other variants
    (a second run finds nothing left to do)."""
    for target in (project_dir / path for path in paths):
        kept = target.with_name(f"{target.stem}_{keep}{target.suffix}")
        if kept.exists():
            kept.replace(target)
        for other in (name for name in names if name != keep):
            target.with_name(f"{target.stem}_{other}{target.suffix}").unlink(missing_ok=True)


def choose_example_resource(project_dir: Path, included: bool) -> None:
    if not included:
        remove_files(project_dir, EXAMPLE_RESOURCE_DIRS)
    names = ("with_items", "without_items")
    keep_variant(project_dir, EXAMPLE_RESOURCE_VARIANTS, names[0 if included else 1], names)


def choose_database(project_dir: Path, database: str) -> None:
    elsewhere = SQLITE_ONLY_PATHS if database == "postgresql" else POSTGRESQL_ONLY_PATHS
    remove_files(project_dir, elsewhere)
    keep_variant(project_dir, DATABASE_VARIANTS, database, DATABASES)


def choose_rate_limit_storage(project_dir: Path, use_redis: bool) -> None:
    if not use_redis:
        remove_files(project_dir, REDIS_FILES)
    names = ("redis", "memory")
    keep_variant(project_dir, RATE_LIMIT_STORAGE_VARIANTS, names[0 if use_redis else 1], names)


def choose_observability(project_dir: Path, observability: str) -> None:
    if observability != "opentelemetry":
        remove_files(project_dir, OPENTELEMETRY_FILES)
    keep_variant(project_dir, OBSERVABILITY_VARIANTS, observability, ("opentelemetry", "none"))


def choose_jobs_engine(project_dir: Path, engine: str) -> None:
    if engine != "dramatiq":
        remove_files(project_dir, DRAMATIQ_FILES)
    keep_variant(project_dir, JOBS_ENGINE_VARIANTS, engine, JOBS_ENGINES)


def needs_outage_proxy(answers: Mapping[str, Any]) -> bool:
    return answers.get("database") == "postgresql" or answers.get("jobs_engine") == "dramatiq"


def write_env_file(project_dir: Path) -> bool:
    """Write a private, git-ignored ``.env`` with a fresh secret unless one exists; True if so."""
    env_file = project_dir / ".env"
    if env_file.exists():
        return False
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(
            "# Local development settings. This file is git-ignored: keep it out of version "
            f"control.\nENVIRONMENT=local\nSECRET_KEY={secrets.token_urlsafe(48)}\n"
        )
    return True


def interpreter_version(executable: Path | str) -> str | None:
    """Run ``executable`` (a pyenv shim of a version not selected fails) for its "major.minor"."""
    try:
        probe = subprocess.run([executable, "-c", VERSION_PROBE], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return (probe.stdout.decode().strip() or None) if probe.returncode == 0 else None


def find_uv() -> str | None:
    """The uv executable on PATH or next to the running interpreter."""
    return shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))


def _patch_number(path: Path) -> int:
    match = re.fullmatch(r"\d+\.\d+\.(\d+)", path.name)
    return int(match.group(1)) if match else -1


def python_candidates(version: str) -> Iterator[str]:
    """Places where a Python ``version`` may live, most preferred first."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        yield sys.executable
    name = f"python{version}"
    for directory in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        on_path = shutil.which(name, path=directory)
        if on_path:
            yield on_path
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv").expanduser()
    installs = (pyenv_root / "versions").glob(f"{version}.*")
    for install in sorted(installs, key=_patch_number, reverse=True):
        yield str(install / "bin" / name)
    uv = find_uv()
    if uv:
        command = [uv, "python", "find", "--system", version]
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        try:
            found = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return
        if found.returncode == 0 and found.stdout.strip():
            yield found.stdout.strip().splitlines()[-1]


def find_python(version: str) -> str | None:
    """An interpreter that really runs as Python ``version``, or None (each probed once)."""
    seen: set[str] = set()
    for candidate in python_candidates(version):
        if candidate in seen:
            continue
        seen.add(candidate)
        if candidate == sys.executable or interpreter_version(candidate) == version:
            return candidate
    return None


def make_install(python: str) -> list[str]:
    return ["make", "install", f"PYTHON={python}"]


def install_command(python: str) -> tuple[str, list[str]]:
    """The installer, and the `make install` the hook runs and prints: uv if it is found, else
    pip (FASTAPI_TEMPLATE_INSTALLER=uv or =pip forces one), named where make would not see it."""
    forced = os.environ.get(INSTALLER_VARIABLE, "").strip().lower()
    if forced not in {"", "uv", "pip"}:
        warn(f"warning: ignoring {INSTALLER_VARIABLE}={forced!r} (expected 'uv' or 'pip')")
    uv = find_uv()
    if forced == "uv" and uv is None:
        raise InstallError(f"{INSTALLER_VARIABLE}=uv is set but no uv executable was found")
    command = make_install(python)
    if forced == "pip" or uv is None:
        return "pip", [*command, "INSTALLER=pip"]
    return "uv", command if uv == shutil.which("uv") else [*command, f"UV={uv}"]


def project_env(project_dir: Path) -> dict[str, str]:
    """This environment with .venv active and uv kept from downloading a Python."""
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_VARIABLES}
    path = os.pathsep.join([str(project_dir / VENV_PYTHON.parent), env.get("PATH", "")])
    venv = str(project_dir / VENV_NAME)
    return {**env, "PATH": path, "VIRTUAL_ENV": venv, "UV_PYTHON_DOWNLOADS": "never"}


def install(project_dir: Path, command: Sequence[str], version: str, installer: str) -> None:
    """Run ``command``, a `make install`, into a .venv of Python ``version``: kept (and filled
    again) if there is one, else made by make. Raises InstallError."""
    venv_dir = project_dir / VENV_NAME
    if interpreter_version(project_dir / VENV_PYTHON) == version:
        print(f"Reusing the existing virtual environment {venv_dir}")
        (venv_dir / INSTALLED_STAMP).unlink(missing_ok=True)
    elif venv_dir.exists() and not (venv_dir / "pyvenv.cfg").is_file():
        raise InstallError(f"{venv_dir} exists but is not a virtual environment; move it away")
    elif venv_dir.exists():
        print(f"Replacing {venv_dir}: it does not run Python {version}")
        shutil.rmtree(venv_dir)
    print(f"Installing the project and its dev dependencies with {installer}")
    env = project_env(project_dir)
    try:
        made = subprocess.run(command, cwd=project_dir, env=env, stdout=PIPE, stderr=STDOUT)
    except OSError as error:
        raise InstallError(f"`{shlex.join(command)}` could not be started: {error}") from error
    if made.returncode != 0:
        output = made.stdout.decode(errors="replace")
        raise InstallError(f"`{shlex.join(command)}` exited with status {made.returncode}", output)


def finish_commands(project_dir: Path, install: Sequence[str] = ("make", "install")) -> str:
    commands = [f"cd {shlex.quote(str(project_dir))}", shlex.join(install), "make test"]
    return "\n".join(f"    {command}" for command in commands)


def skip_reason(answers: Mapping[str, Any]) -> str | None:
    """Why not to install and test. cruft renders twice in a scratch folder to diff two commits
    for `cruft update`: a venv there would only cost minutes."""
    if not as_bool(answers.get("run_tests", True)):
        return "run_tests is off"
    if CRUFT_COMMIT_KEY in answers:
        return "rendered by cruft"
    if as_bool(os.environ.get(SKIP_INSTALL_VARIABLE)):
        return f"{SKIP_INSTALL_VARIABLE} is set"
    return None


def main(raw_answers: str) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    answers = load_answers(raw_answers)
    project_dir = Path.cwd()
    version = str(answers["python_version"])

    choose_example_resource(project_dir, as_bool(answers.get("include_example_resource", True)))
    choose_database(project_dir, str(answers.get("database", "sqlite")))
    choose_rate_limit_storage(project_dir, as_bool(answers.get("use_redis", False)))
    choose_observability(project_dir, str(answers.get("observability", "none")))
    choose_jobs_engine(project_dir, str(answers.get("jobs_engine", "embedded")))
    if not needs_outage_proxy(answers):
        remove_files(project_dir, (OUTAGE_PROXY,))
    if write_env_file(project_dir):
        print("Wrote .env with a fresh SECRET_KEY (git-ignored; keep it private).")

    reason = skip_reason(answers)
    if reason:
        print(f"Skipping the virtual environment, the install and the test run ({reason}).")
        print(f"The project is at {project_dir}. To install and test it later, run:")
        print(finish_commands(project_dir))
        return 0
    python = find_python(version)
    if python is None:
        warn(
            f"warning: Python {version} was not found (looked for the running interpreter, "
            f"python{version} on PATH, pyenv installs and `uv python find`).",
            f"The project is kept at {project_dir}; nothing was installed and no test was run.",
            f"Install Python {version}, then run:",
            finish_commands(project_dir, make_install(f"python{version}")),
        )
        return 0
    print(f"Using Python {version} at {python}")
    command = make_install(python)  # what to retry with if the installer cannot be chosen
    try:
        installer, command = install_command(python)
        install(project_dir, command, version, installer)
    except InstallError as error:
        warn(f"warning: setting up the project's virtual environment failed: {error}")
        if error.output.strip():
            tail = error.output.splitlines()[-OUTPUT_TAIL_LINES:]
            warn("Last lines of the installer output:", *(f"    | {line}" for line in tail))
        warn(
            f"The project is kept at {project_dir}; its tests were not run.",
            "Fix the cause above (often an unreachable package index), then retry with:",
            finish_commands(project_dir, command),
        )
        return 0

    print("Running the generated test suite")
    tests = [str(project_dir / VENV_PYTHON), "-m", "pytest"]
    status = subprocess.run(tests, cwd=project_dir, env=project_env(project_dir)).returncode
    if status != 0:
        warn(
            f"error: the generated project's tests failed (pytest exit status {status}).",
            f"The project is at {project_dir} (cookiecutter keeps it only when it runs "
            "with --keep-project-on-failure; without that option it deletes it now).",
            f"To rerun the tests: cd {shlex.quote(str(project_dir))} && make test",
        )
        return 1
    started_in = os.environ.get("PWD")  # where cookiecutter was started: `cd` from there
    here = started_in and Path(started_in).resolve() == project_dir.parent.resolve()
    name = answers.get("project_name", project_dir.name)
    print(f"\nSuccess: {name} is ready at {project_dir} and its tests pass.\nNext steps:")
    print(f"    cd {shlex.quote(project_dir.name if here else str(project_dir))}")
    print("    make run     # start the development server\n    make test    # run the tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON))
