"""What the generated suite cannot check from inside its own source tree: the .gitignore, the
CI workflow, and the project installed as a package (not editable) and run from elsewhere."""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from bakery import (
    HOOKS_DIR,
    LOCAL_PYTHON,
    PROJECT_TEMPLATE_DIR,
    TEMPLATE_DIR,
    VALID_ANSWERS,
    bake,
    clean_env,
)
from containers import (
    check_compose,
    check_dockerfile,
    check_kubernetes,
    lint_dockerfile,
    require_kubectl,
)

VARIANTS = {
    "sqlite": {},
    "postgresql-redis": {"database": "postgresql", "use_redis": "yes"},
}
# A Jinja expression, statement or comment, as cookiecutter would render it.
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|\{\{|\{%|\{#")
FULL_SHA = re.compile(r"[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"uses: \S+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bake of each variant the workflow renders differently, without installing it."""
    context = {"run_tests": "no", **VARIANTS[request.param]}
    result = bake(tmp_path_factory.mktemp(request.param), context)
    assert result.returncode == 0, result.describe()
    return result.project_dir


def workflow(project: Path) -> tuple[dict[str, Any], str]:
    path = project / ".github" / "workflows" / "check.yml"
    text = path.read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document, text


def test_workflow_token_can_only_read(project: Path) -> None:
    document, _ = workflow(project)
    assert document["permissions"] == {"contents": "read"}
    for name, job in document["jobs"].items():
        assert job.get("permissions", {"contents": "read"}) == {"contents": "read"}, name


def test_workflow_actions_are_pinned_to_a_commit(project: Path) -> None:
    document, text = workflow(project)
    steps = [step for job in document["jobs"].values() for step in job["steps"]]
    actions = [step["uses"] for step in steps if "uses" in step]
    assert actions, "the workflow uses no action at all"
    for action in actions:
        name, _, ref = action.partition("@")
        assert FULL_SHA.fullmatch(ref), f"{name} is not pinned to a full commit SHA: {ref!r}"
    # Each pin says which release it is, so updates can be read.
    uses_lines = [line.strip() for line in text.splitlines() if "uses:" in line]
    for line in uses_lines:
        assert VERSION_COMMENT.search(line), line


def test_checkout_keeps_no_credentials(project: Path) -> None:
    document, _ = workflow(project)
    steps = [step for job in document["jobs"].values() for step in job["steps"]]
    checkouts = [step for step in steps if step.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


IGNORED = [".env", "app.db", "app.db-journal", "app.db-wal", "app.db-shm", ".venv/bin/python"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_gitignore_covers_local_state(project: Path, tmp_path: Path) -> None:
    """SQLite in WAL mode keeps `-wal` and `-shm` files beside the database."""
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copy(project / ".gitignore", repository / ".gitignore")
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *IGNORED],
        cwd=repository,
        capture_output=True,
        text=True,
        check=False,
    )
    not_ignored = [
        line.split("\t")[-1] for line in result.stdout.splitlines() if line.startswith("::")
    ]
    assert not_ignored == []
    tracked = ["app/main.py", "migrations/env.py", ".env.example", "alembic.ini"]
    kept = subprocess.run(
        ["git", "check-ignore", "--no-index", *tracked], cwd=repository, check=False
    )
    assert kept.returncode == 1, "a file of the project itself is ignored"


# Reads the settings and opens the default database, as the server does when it starts.
SERVE_LIKE = """
import asyncio, json, sysconfig
import app
from sqlalchemy import text
from app.core.config import get_settings
from app.db.engine import create_engine

async def connect() -> None:
    engine = create_engine(get_settings())
    async with engine.connect() as connection:
        await connection.execute(text("select 1"))
    await engine.dispose()

asyncio.run(connect())
print(json.dumps({
    "package": app.__file__,
    "site": sysconfig.get_path("purelib"),
    "log_level": get_settings().LOG_LEVEL,
}))
"""


def test_an_installed_project_keeps_env_and_database_in_the_working_directory(
    tmp_path: Path,
) -> None:
    """`uv pip install .` (not editable) into a fresh venv, then run from another folder: the
    working directory's .env is read and the SQLite file is made there, not in site-packages."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed")
    result = bake(tmp_path / "bake", {"run_tests": "no", "python_version": LOCAL_PYTHON})
    assert result.returncode == 0, result.describe()
    venv, work = tmp_path / "venv", tmp_path / "work"
    # No setting of the service may come from this environment: only the .env under test.
    example = (result.project_dir / ".env.example").read_text(encoding="utf-8")
    settings = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    env = {key: value for key, value in clean_env().items() if key not in settings}
    subprocess.run([uv, "venv", "-q", "--python", LOCAL_PYTHON, str(venv)], env=env, check=True)
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "-q", "--python", str(python), str(result.project_dir)]
    subprocess.run(install, env=env, check=True, timeout=600)
    work.mkdir()
    (work / ".env").write_text("LOG_LEVEL=WARNING\n", encoding="utf-8")
    ran = subprocess.run(
        [str(python), "-c", SERVE_LIKE],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout.splitlines()[-1])
    site = Path(seen["site"])
    assert Path(seen["package"]).is_relative_to(site), "the package was not installed"
    assert seen["log_level"] == "WARNING"
    assert sorted(path.name for path in work.iterdir()) == [".env", "app.db"]
    assert list(site.glob("*.db")) == []
    assert not (site / ".env").exists()


def test_container_files_fit_the_variant(project: Path, request: pytest.FixtureRequest) -> None:
    """The Dockerfile lints clean and compose.yaml holds the services of the variant's options
    (the only place PostgreSQL with Redis is checked)."""
    config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    python_version = config["project"]["requires-python"].removeprefix(">=")
    answers = {**VALID_ANSWERS, "run_tests": False, "python_version": python_version}
    for key, value in VARIANTS[request.node.callspec.params["project"]].items():
        answers[key] = value == "yes" if value in {"yes", "no"} else value
    result = lint_dockerfile(project)
    assert result.returncode == 0, result.stdout + result.stderr
    check_dockerfile(project, answers)
    check_compose(project, answers)


def test_kubernetes_manifests_fit_the_variant(
    project: Path, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL projects get a kustomize base and production overlay that render and validate
    offline (the PostgreSQL project without Redis is checked in its full bake); SQLite projects,
    which one file cannot scale past one pod, get none."""
    variant = VARIANTS[request.node.callspec.params["project"]]
    if variant.get("database") != "postgresql":
        assert not (project / "deploy" / "kubernetes").exists()
        return
    answers = {**VALID_ANSWERS, "use_redis": variant.get("use_redis") == "yes"}
    check_kubernetes(project, answers, require_kubectl())


def jinja_outside_strings(source: str) -> list[str]:
    """Jinja in a hook's code, where only a string literal may hold it (the answers, rendered
    as data into one; see ANSWERS_JSON)."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.STRING:
            found += [f"line {token.start[0]}: {match}" for match in JINJA.findall(token.string)]
    return found


def test_template_python_is_python_before_rendering() -> None:
    """Every .py file of the template parses as it is stored, so ruff, mypy and an editor read
    the code a project gets: option-specific code lives in whole files the post-gen hook keeps
    or removes, and the project's files hold no Jinja at all."""
    problems = []
    sources = sorted(PROJECT_TEMPLATE_DIR.rglob("*.py")) + sorted(HOOKS_DIR.glob("*.py"))
    assert len(sources) > 50
    for path in sources:
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(TEMPLATE_DIR).as_posix()
        if path.is_relative_to(HOOKS_DIR):
            jinja = jinja_outside_strings(source)
        else:
            jinja = [
                f"line {number}: {match}"
                for number, line in enumerate(source.splitlines(), start=1)
                for match in JINJA.findall(line)
            ]
        try:
            ast.parse(source, filename=name)
        except SyntaxError as error:
            problems.append(f"{name}: not Python ({error.msg}, line {error.lineno})")
        if jinja:
            problems.append(f"{name} holds Jinja: {'; '.join(jinja[:5])}")
    assert problems == [], "\n".join(problems)
