"""Finish the generated project: trim options, write .env, install and test.

Cookiecutter renders this script with Jinja and runs it with the generated
project directory as the working directory. Running it again in the same
directory is safe: it keeps the existing `.env` and a `.venv` of the right
Python, and only reinstalls and reruns the tests.

Expected problems (no matching Python, no reachable package index) end with a
warning, exit status 0 and the project kept in place, together with the
commands to finish the setup by hand. Failing generated tests end with exit
status 1, which makes cookiecutter report the failure.
"""

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
from typing import Any

# The answers enter this script as data, never as code. Cookiecutter renders
# the one Jinja expression below into a JSON document: ``tojson`` writes ASCII
# only and escapes every quote and backslash inside a value (``\"``, ``\\``).
# That document lands inside a raw triple-quoted string, which keeps each
# backslash as written, so ``json.loads`` reads exactly the JSON text. The
# string cannot end early: an escaped quote never closes a raw string, and a
# JSON document never holds three unescaped quotes in a row and always ends
# with ``}``. Unrendered, the line is still an ordinary string literal, so
# ruff and mypy check this file exactly as it is stored in the template.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# What each option owns. A path in a *_VARIANTS list is stored in the template once per answer,
# as `<name>_<answer>.py` beside it; the project keeps its answer's file as `<name>.py`.
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
# SQLite is embedded: there is no server to lose, no pool to size, and one file cannot back
# several pods.
POSTGRESQL_ONLY_PATHS = (
    "tests/test_postgresql.py",
    "tests/test_outage.py",
    "tests/test_pool.py",
    "deploy/kubernetes",
)
SQLITE_ONLY_PATHS = ("tests/test_sqlite.py",)
# use_redis: rate limits counted in Redis ("redis") or in each process's memory ("memory").
RATE_LIMIT_STORAGE_VARIANTS = ("app/core/ratelimit_settings.py",)
REDIS_FILES = ("tests/core/test_rate_limit_redis.py",)
# observability: OpenTelemetry traces ("opentelemetry") or none ("none": the same module names,
# doing nothing, so the rest of the code is one for both).
OBSERVABILITY_VARIANTS = ("app/core/tracing.py", "app/core/tracing_settings.py")
OPENTELEMETRY_FILES = ("tests/core/test_tracing.py",)
# jobs_engine: jobs run by the service's own processes ("embedded"), or carried by RabbitMQ to
# Dramatiq workers ("dramatiq").
JOBS_ENGINES = ("embedded", "dramatiq")
JOBS_ENGINE_VARIANTS = ("app/core/jobs_settings.py", "app/jobs/engine.py")
DRAMATIQ_FILES = (
    "app/jobs/broker.py",
    "app/jobs/worker.py",
    "tests/jobs/effects.py",
    "tests/jobs/test_dramatiq.py",
)
# The TCP proxy that cuts a server off on purpose: for PostgreSQL's outage tests, and for
# RabbitMQ's.
OUTAGE_PROXY = "tests/outage.py"
SKIP_INSTALL_VARIABLE = "FASTAPI_TEMPLATE_SKIP_INSTALL"
# cruft adds the template's commit to the answers it renders with: to record a new project
# (`cruft create`) or, twice in a scratch folder, to diff two commits (`cruft update`).
CRUFT_COMMIT_KEY = "_commit"
INSTALLER_VARIABLE = "FASTAPI_TEMPLATE_INSTALLER"
# ``pip install --group`` (PEP 735 dependency groups) needs pip 25.1 or later.
PIP_REQUIREMENT = "pip>=25.1"
VENV_NAME = ".venv"
INSTALLED_STAMP = ".installed"
OUTPUT_TAIL_LINES = 30
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


class InstallError(Exception):
    """Creating the virtual environment or installing into it failed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output = output


def say(message: str = "") -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_answers(raw: str) -> dict[str, Any]:
    """Parse the JSON document cookiecutter rendered into this script."""
    answers = json.loads(raw)
    if not isinstance(answers, dict):
        msg = "the cookiecutter context is not a JSON object"
        raise TypeError(msg)
    return answers


def as_bool(value: object) -> bool:
    """Read a yes/no answer, whether cookiecutter passed a bool or a word."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def env_flag(name: str) -> bool:
    return as_bool(os.environ.get(name, ""))


def quoted(path: Path | str) -> str:
    return shlex.quote(str(path))


def venv_python_path(venv_dir: Path) -> Path:
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def remove_files(project_dir: Path, relatives: tuple[str, ...]) -> None:
    """Delete files and folders of the project; missing ones are fine."""
    for relative in relatives:
        path = project_dir / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def keep_variant(project_dir: Path, relatives: tuple[str, ...], keep: str, *drop: str) -> None:
    """Make each `<name>_<keep>.py` the project's `<name>.py` and delete the other variants.

    A second run finds nothing left to rename or delete, and changes nothing.
    """
    for relative in relatives:
        target = project_dir / relative
        kept = target.with_name(f"{target.stem}_{keep}{target.suffix}")
        if kept.exists():
            kept.replace(target)
        for other in drop:
            target.with_name(f"{target.stem}_{other}{target.suffix}").unlink(missing_ok=True)


def choose_example_resource(project_dir: Path, included: bool) -> None:
    if included:
        keep_variant(project_dir, EXAMPLE_RESOURCE_VARIANTS, "with_items", "without_items")
    else:
        remove_files(project_dir, EXAMPLE_RESOURCE_DIRS)
        keep_variant(project_dir, EXAMPLE_RESOURCE_VARIANTS, "without_items", "with_items")


def choose_database(project_dir: Path, database: str) -> None:
    remove_files(
        project_dir, SQLITE_ONLY_PATHS if database == "postgresql" else POSTGRESQL_ONLY_PATHS
    )
    others = [name for name in DATABASES if name != database]
    keep_variant(project_dir, DATABASE_VARIANTS, database, *others)


def choose_rate_limit_storage(project_dir: Path, use_redis: bool) -> None:
    if use_redis:
        keep_variant(project_dir, RATE_LIMIT_STORAGE_VARIANTS, "redis", "memory")
    else:
        remove_files(project_dir, REDIS_FILES)
        keep_variant(project_dir, RATE_LIMIT_STORAGE_VARIANTS, "memory", "redis")


def choose_observability(project_dir: Path, observability: str) -> None:
    if observability == "opentelemetry":
        keep_variant(project_dir, OBSERVABILITY_VARIANTS, "opentelemetry", "none")
    else:
        remove_files(project_dir, OPENTELEMETRY_FILES)
        keep_variant(project_dir, OBSERVABILITY_VARIANTS, "none", "opentelemetry")


def needs_outage_proxy(answers: Mapping[str, Any]) -> bool:
    return answers.get("database") == "postgresql" or answers.get("jobs_engine") == "dramatiq"


def choose_jobs_engine(project_dir: Path, engine: str) -> None:
    if engine != "dramatiq":
        remove_files(project_dir, DRAMATIQ_FILES)
    others = [name for name in JOBS_ENGINES if name != engine]
    keep_variant(project_dir, JOBS_ENGINE_VARIANTS, engine, *others)


def write_env_file(project_dir: Path) -> bool:
    """Write a private ``.env`` with a fresh secret unless one already exists.

    The project's ``.gitignore`` ignores ``.env``, so the random value never
    reaches a tracked file. Returns True when the file was written.
    """
    env_file = project_dir / ".env"
    if env_file.exists():
        return False
    content = (
        "# Local development settings. This file is git-ignored: keep it out of version control.\n"
        "ENVIRONMENT=local\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
    )
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    return True


def interpreter_version(executable: Path | str) -> str | None:
    """Run ``executable`` and return its "major.minor", or None if it fails.

    Running the candidate matters: pyenv shims exist on PATH for versions that
    are installed but not selected, and such a shim exits with an error.
    """
    try:
        probe = subprocess.run(
            [str(executable), "-c", VERSION_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if probe.returncode != 0:
        return None
    return probe.stdout.strip() or None


def find_uv() -> str | None:
    """The uv executable on PATH or next to the running interpreter."""
    on_path = shutil.which("uv")
    if on_path:
        return on_path
    sibling = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return None


def _patch_number(path: Path) -> int:
    match = re.fullmatch(r"\d+\.\d+\.(\d+)", path.name)
    return int(match.group(1)) if match else -1


def python_candidates(version: str) -> Iterator[str]:
    """Places where a Python ``version`` may live, most preferred first."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        yield sys.executable
    name = f"python{version}"
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory:
            found = shutil.which(name, path=directory)
            if found:
                yield found
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv").expanduser()
    installs = sorted(
        (pyenv_root / "versions").glob(f"{version}.*"), key=_patch_number, reverse=True
    )
    for install in installs:
        yield str(install / "bin" / name)
    uv = find_uv()
    if uv:
        try:
            found_by_uv = subprocess.run(
                [uv, "python", "find", "--system", version],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
            )
        except (OSError, subprocess.SubprocessError):
            return
        if found_by_uv.returncode == 0 and found_by_uv.stdout.strip():
            yield found_by_uv.stdout.strip().splitlines()[-1]


def find_python(version: str) -> str | None:
    """An interpreter that really runs as Python ``version``, or None."""
    seen: set[str] = set()
    for candidate in python_candidates(version):
        if candidate in seen:
            continue
        seen.add(candidate)
        if candidate == sys.executable or interpreter_version(candidate) == version:
            return candidate
    return None


def choose_installer() -> tuple[str, str | None]:
    """Return ("uv", path to uv) or ("pip", None).

    uv is preferred when it is available; ``FASTAPI_TEMPLATE_INSTALLER=uv`` or
    ``=pip`` forces one of them.
    """
    forced = os.environ.get(INSTALLER_VARIABLE, "").strip().lower()
    uv = find_uv()
    if forced == "pip":
        return "pip", None
    if forced == "uv" and uv is None:
        msg = f"{INSTALLER_VARIABLE}=uv is set but no uv executable was found"
        raise InstallError(msg)
    if forced not in {"", "uv"}:
        warn(f"warning: ignoring {INSTALLER_VARIABLE}={forced!r} (expected 'uv' or 'pip')")
    if uv is not None:
        return "uv", uv
    return "pip", None


def run_step(command: Sequence[str], cwd: Path, extra_env: Mapping[str, str] | None = None) -> None:
    """Run one setup command quietly; raise InstallError if it fails."""
    env = {**os.environ, **(extra_env or {})}
    try:
        result = subprocess.run(
            list(command),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
    except OSError as error:
        msg = f"`{shlex.join(command)}` could not be started: {error}"
        raise InstallError(msg) from error
    if result.returncode != 0:
        msg = f"`{shlex.join(command)}` exited with status {result.returncode}"
        raise InstallError(msg, result.stdout)


def install_steps(installer: str, python: str, *, create_venv: bool) -> list[list[str]]:
    """The commands, run from the project directory, that create and fill .venv.

    The hook runs them (`create_venv_and_install`, with uv's own path for "uv") and prints
    them for a person to run (`setup_commands`): one list, so the two never differ. For uv,
    uv.lock pins every package, so each later `make install` (and CI) gets the same set; an
    existing lock is kept unless pyproject.toml asks for something it lacks, and `--locked`
    refuses anything the lock does not say. Bytecode is compiled now, as pip does: where
    PYTHONDONTWRITEBYTECODE is set, every process of every test run would compile its imports.
    """
    venv_python = str(venv_python_path(Path(VENV_NAME)))
    steps: list[list[str]] = []
    if installer == "uv":
        if create_venv:
            steps.append(["uv", "venv", "--python", python, VENV_NAME])
        steps.append(["uv", "lock", "--python", python])
        steps.append(
            ["uv", "sync", "--locked", "--python", python, "--compile-bytecode", "--group", "dev"]
        )
    else:
        if create_venv:
            steps.append([python, "-m", "venv", VENV_NAME])
        steps.append([venv_python, "-m", "pip", "install", "-U", PIP_REQUIREMENT])
        steps.append([venv_python, "-m", "pip", "install", "-e", ".", "--group", "dev"])
    return steps


def setup_commands(
    installer: str, version: str, python: str | None = None, venv_exists: bool = False
) -> list[str]:
    """`install_steps` as shell lines for a person. ``python`` is the interpreter found for
    ``version``, if any; without one, uv is left to find the version and pip users need
    python3.X."""
    target = python or (version if installer == "uv" else f"python{version}")
    return [
        shlex.join(step) for step in install_steps(installer, target, create_venv=not venv_exists)
    ]


def format_commands(project_dir: Path, commands: Sequence[str]) -> str:
    lines = [f"cd {quoted(project_dir)}", *commands, "make test"]
    return "\n".join(f"    {line}" for line in lines)


def create_venv_and_install(project_dir: Path, python: str, version: str, uv: str | None) -> None:
    """Create (or reuse) ``<project>/.venv`` and install the project into it.

    Uses uv when ``uv`` is its path, else ``venv`` and pip. Raises InstallError
    on failure.
    """
    installer = "pip" if uv is None else "uv"
    venv_dir = project_dir / VENV_NAME
    reuse = interpreter_version(project_dir / venv_python_path(Path(VENV_NAME))) == version
    if reuse:
        say(f"Reusing the existing virtual environment {venv_dir}")
    elif venv_dir.exists():
        if not (venv_dir / "pyvenv.cfg").is_file():
            msg = f"{venv_dir} exists but is not a virtual environment; move it away"
            raise InstallError(msg)
        say(f"Replacing {venv_dir}: it does not run Python {version}")
        shutil.rmtree(venv_dir)
    uv_env = {"UV_PYTHON_DOWNLOADS": "never", "UV_PROJECT_ENVIRONMENT": VENV_NAME}
    if not reuse:
        say(f"Creating the virtual environment {venv_dir} with {installer}")
    say(f"Installing the project and its dev dependencies with {installer}")
    for step in install_steps(installer, python, create_venv=not reuse):
        if uv is not None and step[0] == "uv":
            run_step([uv, *step[1:]], project_dir, uv_env)
        else:
            run_step(step, project_dir)
    # The generated Makefile reinstalls only when pyproject.toml or uv.lock is newer than this.
    (venv_dir / INSTALLED_STAMP).touch()


def run_generated_tests(project_dir: Path) -> int:
    """Run the generated suite with the project's interpreter, streaming output."""
    venv_dir = project_dir / VENV_NAME
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = os.pathsep.join([str(venv_python_path(venv_dir).parent), env.get("PATH", "")])
    say("Running the generated test suite")
    completed = subprocess.run(
        [str(venv_python_path(venv_dir)), "-m", "pytest"],
        cwd=project_dir,
        env=env,
        check=False,
    )
    return completed.returncode


def output_tail(output: str) -> str:
    lines = output.rstrip().splitlines()[-OUTPUT_TAIL_LINES:]
    return "\n".join(f"    | {line}" for line in lines) or "    | (no output)"


def cd_target(project_dir: Path) -> str:
    """What to ``cd`` to from the directory cookiecutter was started in."""
    started_in = os.environ.get("PWD")
    if started_in and Path(started_in).resolve() == project_dir.parent.resolve():
        return quoted(project_dir.name)
    return quoted(project_dir)


def later_commands(project_dir: Path, version: str) -> str:
    """What a person runs to install and test the project, with uv where it is found."""
    return format_commands(project_dir, setup_commands("uv" if find_uv() else "pip", version))


def report_skipped(project_dir: Path, version: str, reason: str) -> None:
    say(f"Skipping the virtual environment, the install and the test run ({reason}).")
    say(f"The project is at {project_dir}. To install and test it later, run:")
    say(later_commands(project_dir, version))


def report_missing_python(project_dir: Path, version: str) -> None:
    warn(
        f"warning: Python {version} was not found (looked for the running interpreter, "
        f"python{version} on PATH, pyenv installs and `uv python find`)."
    )
    warn(f"The project is kept at {project_dir}; nothing was installed and no test was run.")
    warn(f"Install Python {version}, then run:")
    warn(later_commands(project_dir, version))


def report_install_failure(
    project_dir: Path, python: str, version: str, installer: str, error: InstallError
) -> None:
    venv_exists = interpreter_version(venv_python_path(project_dir / VENV_NAME)) == version
    warn(f"warning: setting up the project's virtual environment failed: {error.message}")
    if error.output.strip():
        warn("Last lines of the installer output:")
        warn(output_tail(error.output))
    warn(f"The project is kept at {project_dir}; its tests were not run.")
    warn("Fix the cause above (often an unreachable package index), then retry with:")
    warn(format_commands(project_dir, setup_commands(installer, version, python, venv_exists)))


def report_test_failure(project_dir: Path, status: int) -> None:
    warn(f"error: the generated project's tests failed (pytest exit status {status}).")
    warn(
        f"The project is at {project_dir} (cookiecutter keeps it only when it runs "
        "with --keep-project-on-failure; without that option it deletes it now)."
    )
    warn(f"To rerun the tests: cd {quoted(project_dir)} && make test")


def report_success(project_dir: Path, project_name: str) -> None:
    say("")
    say(f"Success: {project_name} is ready at {project_dir} and its tests pass.")
    say("Next steps:")
    say(f"    cd {cd_target(project_dir)}")
    say("    make run     # start the development server")
    say("    make test    # run the tests")


def main(raw_answers: str) -> int:
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
        say("Wrote .env with a fresh SECRET_KEY (git-ignored; keep it private).")

    if not as_bool(answers.get("run_tests", True)):
        report_skipped(project_dir, version, "run_tests is off")
        return 0
    if CRUFT_COMMIT_KEY in answers:
        # An update render is thrown away once diffed: a venv, a lock or a test run there
        # would cost minutes and change nothing.
        report_skipped(project_dir, version, "rendered by cruft")
        return 0
    if env_flag(SKIP_INSTALL_VARIABLE):
        report_skipped(project_dir, version, f"{SKIP_INSTALL_VARIABLE} is set")
        return 0

    python = find_python(version)
    if python is None:
        report_missing_python(project_dir, version)
        return 0
    say(f"Using Python {version} at {python}")

    installer = "pip" if find_uv() is None else "uv"
    try:
        installer, uv = choose_installer()
        create_venv_and_install(project_dir, python, version, uv)
    except InstallError as error:
        report_install_failure(project_dir, python, version, installer, error)
        return 0

    status = run_generated_tests(project_dir)
    if status != 0:
        report_test_failure(project_dir, status)
        return 1
    report_success(project_dir, str(answers.get("project_name", project_dir.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON))
