"""Helpers that bake the template with the cookiecutter CLI and inspect the result.

Every bake runs ``python -m cookiecutter`` in a subprocess, so the hooks run
exactly as they do for a user and their output can be captured. Each bake gets
its own working directory and its own cookiecutter config (replay and clone
directories), which keeps parallel workers apart and the home directory clean.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.utils import create_env_with_context

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
PROJECT_TEMPLATE_DIR = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
HOOKS_DIR = TEMPLATE_DIR / "hooks"
DEFAULT_SLUG = "my_service"
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# A supported version that needs no extra interpreter: the one running the tests.
LOCAL_PYTHON = RUNNING_PYTHON if RUNNING_PYTHON in SUPPORTED_PYTHONS else "3.12"

# A complete, valid set of answers, for running rendered hooks directly.
VALID_ANSWERS: dict[str, Any] = {
    "project_name": "My Service",
    "project_slug": DEFAULT_SLUG,
    "description": "An async FastAPI service.",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "python_version": LOCAL_PYTHON,
    "include_example_resource": True,
    "database": "sqlite",
    "use_redis": False,
    "observability": "none",
    "jobs_engine": "embedded",
    "run_tests": True,
}
# The questions cookiecutter asks, in order (keys starting with "_" are not asked).
QUESTIONS = [
    key
    for key in json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    if not key.startswith("_")
]
# Quotes, backslashes, Jinja, shell, and longer than a line of code may be.
HOSTILE_NAME = (
    'Robert\'); DROP TABLE users;-- "quoted" \\back\\slash {{ x }} $(touch pwned) '
    "and on, well past the hundred characters that one line of the generated code may hold"
)


def load_hook(name: str) -> ModuleType:
    """Import a hook as stored (unrendered); its functions work without answers."""
    spec = importlib.util.spec_from_file_location(f"hook_{name}", HOOKS_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What each option owns, read from the post-gen hook itself: the paths it deletes, and the
# files it keeps in one version per answer (`<name>_<answer>.py`, kept as `<name>.py`).
_POST_GEN = load_hook("post_gen_project")
EXAMPLE_RESOURCE_DIRS: tuple[str, ...] = _POST_GEN.EXAMPLE_RESOURCE_DIRS
REDIS_FILES: tuple[str, ...] = _POST_GEN.REDIS_FILES
OPENTELEMETRY_FILES: tuple[str, ...] = _POST_GEN.OPENTELEMETRY_FILES
OBSERVABILITY: tuple[str, ...] = ("none", "opentelemetry")
JOBS_ENGINES: tuple[str, ...] = _POST_GEN.JOBS_ENGINES
DRAMATIQ_FILES: tuple[str, ...] = _POST_GEN.DRAMATIQ_FILES
POSTGRESQL_ONLY_PATHS: tuple[str, ...] = _POST_GEN.POSTGRESQL_ONLY_PATHS
SQLITE_ONLY_PATHS: tuple[str, ...] = _POST_GEN.SQLITE_ONLY_PATHS
DATABASES: tuple[str, ...] = _POST_GEN.DATABASES
# Each option's variant files, and its answers' variant names.
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "include_example_resource": (
        _POST_GEN.EXAMPLE_RESOURCE_VARIANTS,
        ("with_items", "without_items"),
    ),
    "database": (_POST_GEN.DATABASE_VARIANTS, DATABASES),
    "use_redis": (_POST_GEN.RATE_LIMIT_STORAGE_VARIANTS, ("redis", "memory")),
    "observability": (_POST_GEN.OBSERVABILITY_VARIANTS, OBSERVABILITY),
    "jobs_engine": (_POST_GEN.JOBS_ENGINE_VARIANTS, JOBS_ENGINES),
}


def variant_names(answers: Mapping[str, Any]) -> dict[str, str]:
    """The variant each option's answer keeps, by option."""
    return {
        "include_example_resource": (
            "with_items" if answers.get("include_example_resource", True) else "without_items"
        ),
        "database": str(answers.get("database", "sqlite")),
        "use_redis": "redis" if answers.get("use_redis", False) else "memory",
        "observability": str(answers.get("observability", "none")),
        "jobs_engine": str(answers.get("jobs_engine", "embedded")),
    }


def variant_target(relative: Path, answers: Mapping[str, Any]) -> Path | None:
    """Where a template file lands: itself, the `<name>.py` of the variant its answer keeps,
    or nowhere (None) when it is another answer's variant."""
    kept = variant_names(answers)
    for option, (paths, names) in VARIANTS.items():
        for target in map(Path, paths):
            for name in names:
                if relative == target.with_name(f"{target.stem}_{name}{target.suffix}"):
                    return target if name == kept[option] else None
    return relative


# Files that running, installing or testing a project creates (uv.lock: the hook's `uv lock`);
# they belong to no template option, so the file-set comparison leaves them out.
IGNORED_NAMES = (
    ".venv",
    ".env",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".coverage",
    ".coverage.*",
    "*.db",
    "*.db-*",
    "*.egg-info",
    "htmlcov",
    "uv.lock",
)

# Variables from the calling environment that must not leak into a bake: the
# outer pytest run's own settings, an activated virtual environment and the
# switches the hooks read.
LEAKY_PREFIXES = ("PYTEST_", "COV_CORE_", "FASTAPI_TEMPLATE_")
LEAKY_NAMES = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "COVERAGE_PROCESS_START")

BAKE_TIMEOUT = 1200
TOOL_TIMEOUT = 900
# Lines of a timed-out command's output shown in the failure.
TIMEOUT_TAIL_LINES = 200


@dataclass(frozen=True)
class Bake:
    """One run of cookiecutter: what it printed and where it wrote."""

    returncode: int
    output: str
    output_dir: Path
    project_dir: Path
    config_dir: Path

    def context(self) -> dict[str, Any]:
        """The exact context cookiecutter used, read back from its replay file."""
        replays = sorted((self.config_dir / "replay").glob("*.json"))
        assert len(replays) == 1, f"expected one replay file, found {replays}"
        context: dict[str, Any] = json.loads(replays[0].read_text(encoding="utf-8"))
        return context

    def describe(self) -> str:
        """The end of the bake's output, for assertion messages."""
        tail = "\n".join(self.output.splitlines()[-120:])
        return f"cookiecutter exit status {self.returncode}; last output lines:\n{tail}"


def clean_env(
    overrides: Mapping[str, str] | None = None, unset_prefixes: Sequence[str] = ()
) -> dict[str, str]:
    """This process's environment minus leaky variables, plus ``overrides``."""
    dropped = (*LEAKY_PREFIXES, *unset_prefixes)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped) and key not in LEAKY_NAMES
    }
    env.update(overrides or {})
    return env


def write_config(config_dir: Path) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / "config.yaml"
    # JSON strings are valid YAML scalars, so json.dumps quotes the paths safely.
    config_file.write_text(
        f"cookiecutters_dir: {json.dumps(str(config_dir / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(config_dir / 'replay'))}\n",
        encoding="utf-8",
    )
    return config_file


def bake(
    workdir: Path,
    extra_context: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    keep_project_on_failure: bool = False,
    answers: Sequence[str] | None = None,
    slug: str | None = None,
    unset_prefixes: Sequence[str] = (),
) -> Bake:
    """Run cookiecutter on the template into ``workdir / "out"``.

    Without ``answers`` the run is non-interactive and ``extra_context`` sets
    the variables. With ``answers``, each item is typed at one prompt, in the
    order of cookiecutter.json, the way a person would answer.
    """
    output_dir = workdir / "out"
    config_dir = workdir / "cookiecutter-config"
    command = [
        sys.executable,
        "-m",
        "cookiecutter",
        "--config-file",
        str(write_config(config_dir)),
        "--output-dir",
        str(output_dir),
    ]
    if answers is None:
        command.append("--no-input")
    if keep_project_on_failure:
        command.append("--keep-project-on-failure")
    command.append(str(TEMPLATE_DIR))
    command.extend(f"{key}={value}" for key, value in (extra_context or {}).items())
    workdir.mkdir(parents=True, exist_ok=True)
    typed = "".join(f"{answer}\n" for answer in answers) if answers is not None else None
    completed = run_captured(
        command, workdir, clean_env(env, unset_prefixes), BAKE_TIMEOUT, typed=typed
    )
    project_slug = slug or (extra_context or {}).get("project_slug", DEFAULT_SLUG)
    return Bake(
        returncode=completed.returncode,
        output=completed.stdout,
        output_dir=output_dir,
        project_dir=output_dir / project_slug,
        config_dir=config_dir,
    )


def render_hook(name: str, context: Mapping[str, Any]) -> str:
    """Render hooks/<name>.py the way cookiecutter does before running it."""
    source = (HOOKS_DIR / f"{name}.py").read_text(encoding="utf-8")
    environment = create_env_with_context(dict(context))
    rendered: str = environment.from_string(source).render(**context)
    return rendered


def run_rendered_hook(
    name: str,
    context: Mapping[str, Any],
    cwd: Path,
    script_dir: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Render a hook into ``script_dir`` and run it from ``cwd``, as cookiecutter would."""
    script_dir.mkdir(parents=True, exist_ok=True)
    script = script_dir / f"{name}.py"
    script.write_text(render_hook(name, context), encoding="utf-8")
    return run_captured([sys.executable, str(script)], cwd, clean_env(env), BAKE_TIMEOUT)


def is_ignored(relative: Path) -> bool:
    return any(fnmatch(part, pattern) for part in relative.parts for pattern in IGNORED_NAMES)


def project_files(project_dir: Path) -> set[str]:
    """Relative paths of the files in a generated project, minus run-time files."""
    found: set[str] = set()
    for root, dirs, files in os.walk(project_dir):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if not is_ignored(root_path.relative_to(project_dir) / d)]
        for name in files:
            relative = (root_path / name).relative_to(project_dir)
            if not is_ignored(relative):
                found.add(relative.as_posix())
    return found


def expected_files(context: Mapping[str, Any]) -> set[str]:
    """The files a bake with ``context`` should produce, derived from the template.

    Each template path is rendered like cookiecutter renders it; a path with a
    component that renders to nothing is skipped (cookiecutter does the same).
    A variant file lands as the file it stands for, or not at all (`variant_target`);
    the paths an option owns drop out when its answer does not keep them.
    """
    environment = create_env_with_context(dict(context))
    include_example = context["cookiecutter"]["include_example_resource"]
    use_redis = context["cookiecutter"].get("use_redis", False)
    postgresql = context["cookiecutter"].get("database") == "postgresql"
    traced = context["cookiecutter"].get("observability", "none") == "opentelemetry"
    dramatiq = context["cookiecutter"].get("jobs_engine", "embedded") == "dramatiq"
    outage_proxy = _POST_GEN.needs_outage_proxy(context["cookiecutter"])
    expected: set[str] = set()
    for root, _dirs, files in os.walk(PROJECT_TEMPLATE_DIR):
        for name in files:
            template_relative = (Path(root) / name).relative_to(PROJECT_TEMPLATE_DIR)
            parts = [
                environment.from_string(part).render(**context) for part in template_relative.parts
            ]
            if not all(parts):
                continue
            target = variant_target(Path(*parts), context["cookiecutter"])
            if target is None or is_ignored(target):
                continue
            relative = target
            if not include_example and any(
                relative.is_relative_to(folder) for folder in EXAMPLE_RESOURCE_DIRS
            ):
                continue
            if not use_redis and relative.as_posix() in REDIS_FILES:
                continue
            if not traced and relative.as_posix() in OPENTELEMETRY_FILES:
                continue
            if not dramatiq and relative.as_posix() in DRAMATIQ_FILES:
                continue
            if not outage_proxy and relative.as_posix() == _POST_GEN.OUTAGE_PROXY:
                continue
            only_elsewhere = SQLITE_ONLY_PATHS if postgresql else POSTGRESQL_ONLY_PATHS
            if any(relative.is_relative_to(path) for path in only_elsewhere):
                continue
            expected.add(relative.as_posix())
    return expected


def text_files(project_dir: Path) -> Iterator[tuple[Path, str]]:
    """(path, text) for every generated text file; binary files are skipped."""
    for relative in sorted(project_files(project_dir)):
        path = project_dir / relative
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield path, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


# Jinja delimiters that must not survive rendering. A lone "}}" is not among
# them: it is ordinary code (a nested dict literal such as {KEY: {}}), and an
# unrendered expression always shows its opening "{{" as well.
JINJA_MARKERS = ("{{", "{%", "%}")
# GitHub Actions expressions (``${{ matrix.x }}``) are meant to reach the
# generated files, written in the template inside {% raw %} blocks.
GITHUB_EXPRESSION = re.compile(r"\$\{\{[^{}]*\}\}")


def unrendered_markers(project_dir: Path, allowed: Sequence[str] = ()) -> list[str]:
    """Lines of generated files that still hold Jinja delimiters.

    ``allowed`` lists literal strings to ignore, such as a project name that
    itself contains braces.
    """
    problems: list[str] = []
    for path, text in text_files(project_dir):
        for literal in allowed:
            text = text.replace(literal, "")
        if path.relative_to(project_dir).parts[0] == ".github":
            text = GITHUB_EXPRESSION.sub("", text)
        for number, line in enumerate(text.splitlines(), start=1):
            if any(marker in line for marker in JINJA_MARKERS):
                problems.append(f"{path.relative_to(project_dir)}:{number}: {line.strip()}")
    return problems


def venv_bin(project_dir: Path, name: str) -> Path:
    return project_dir / ".venv" / "bin" / name


def run_in_project(
    project_dir: Path,
    command: Sequence[str | Path],
    timeout: int = TOOL_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in the project directory with its virtual environment active.

    ``env`` adds variables, such as the ones the project was baked with: uv's settings
    (UV_RESOLUTION) decide whether its lock still counts as up to date.
    """
    venv = project_dir / ".venv"
    active = clean_env(
        {
            **(env or {}),
            "VIRTUAL_ENV": str(venv),
            "PATH": os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]),
        }
    )
    return run_captured([str(part) for part in command], project_dir, active, timeout)


def run_captured(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: int,
    typed: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run with `typed` as its input (else none); stdout and stderr together as text, bytes
    that are not UTF-8 replaced, whatever the exit status."""
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            input=typed,
            stdin=None if typed is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        # What it printed before it was stopped is the only clue to where it hung.
        printed = expired.output or b""
        text = printed.decode(errors="replace") if isinstance(printed, bytes) else printed
        tail = "\n".join(text.splitlines()[-TIMEOUT_TAIL_LINES:])
        pytest.fail(f"{command[0]} ran past {timeout} s; the end of its output:\n{tail}")


PYTEST_SUMMARY = re.compile(r"^=+ (?P<summary>.*\bin [0-9.]+s\b.*?) =+$", re.MULTILINE)


def pytest_summary(output: str) -> str | None:
    """The last pytest summary line ("=== 12 passed in 3.4s ===") in ``output``."""
    matches = PYTEST_SUMMARY.findall(output)
    return matches[-1] if matches else None


def python_version_of(executable: str | Path) -> str | None:
    try:
        probe = subprocess.run(
            [str(executable), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def python_available(version: str) -> bool:
    """Whether this machine has a working Python ``version`` in a usual place.

    Bakes for a version that truly is not installed are skipped rather than
    failed; this check is deliberately independent of the hook's own search.
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return True
    candidates: list[str | Path] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(f"python{version}", path=directory) if directory else None
        if found:
            candidates.append(found)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates.extend((pyenv_root / "versions").glob(f"{version}.*/bin/python{version}"))
    return any(python_version_of(candidate) == version for candidate in candidates)


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Mode and content of every file below ``directory``."""
    files: dict[str, tuple[int, bytes]] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            files[path.relative_to(directory).as_posix()] = (path.stat().st_mode, path.read_bytes())
    return files


@contextmanager
def one_at_a_time(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a file: one holder at a time across processes."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
