"""`make resource` in a generated project: two resources scaffolded into a bake, one of them with
every field type, pass every check the project has with no hand edits (ruff, ruff format,
mypy --strict, the migrations, the whole suite with its route walks and coverage gate), with and
without the example resource. Input it refuses is one line on stderr, a non-zero exit status,
and nothing written.

On SQLite only: the scaffolder writes the same files for either database (its migration uses
column types both have), and a PostgreSQL bake and suite would add many minutes to the run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from bakery import (
    LOCAL_PYTHON,
    bake,
    clean_env,
    load_hook,
    pytest_summary,
    python_available,
    run_in_project,
    venv_bin,
)
from test_bakes import mypy_command

GIT_USER = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
# The second has every field type, each also as a field that may be null.
RESOURCES = {
    "orders": "title:str(200) amount:decimal paid:bool due:date",
    "line_items": (
        "label:str(80) notes:text(2000)? quantity:int position:int? price:decimal(10,3) "
        "discount:decimal? gift:bool? ships_on:date? placed_at:datetime reviewed_at:datetime? "
        "code:str(12)?"
    ),
}
# With the example resource, the same two resources are scaffolded into the project of
# tests/test_cruft.py's whole-life update test, which runs every check on it after the update:
# one bake and one suite run less here.
VARIANTS = [
    pytest.param({"include_example_resource": "no"}, id="without-items"),
]


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_USER, *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def install(project: Path) -> None:
    """The post-gen hook's own install: its virtual environment, from its uv.lock."""
    hook = load_hook("post_gen_project")
    python = hook.find_python(LOCAL_PYTHON)
    assert python is not None
    installer, command = hook.install_command(python)
    hook.install(project, command, LOCAL_PYTHON, installer)


def make_resource(project: Path, name: str, fields: str) -> subprocess.CompletedProcess[str]:
    return run_in_project(project, ["make", "resource", f"name={name}", f"fields={fields}"])


def scaffold(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command `make resource` runs, with its stdout and stderr apart."""
    return subprocess.run(
        [str(venv_bin(project, "python")), "-m", "scaffold", *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module", params=VARIANTS)
def scaffolded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A bake, installed and committed to git, with both resources scaffolded into it."""
    if not python_available(LOCAL_PYTHON):
        pytest.skip(f"Python {LOCAL_PYTHON} is not installed on this machine")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    answers: dict[str, str] = {**request.param, "python_version": LOCAL_PYTHON, "run_tests": "no"}
    baked = bake(tmp_path_factory.mktemp("scaffold"), answers)
    assert baked.returncode == 0, baked.describe()
    project = baked.project_dir
    install(project)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "generated")
    for name, fields in RESOURCES.items():
        done = make_resource(project, name, fields)
        assert done.returncode == 0, done.stdout
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "scaffolded")
    return project, answers


@pytest.mark.bake
def test_the_resources_are_written_and_wired(scaffolded: tuple[Path, dict[str, str]]) -> None:
    project, _ = scaffolded
    for name in RESOURCES:
        layers = {path.name for path in (project / "app" / name).iterdir()}
        assert {
            "__init__.py",
            "models.py",
            "schemas.py",
            "service.py",
            "router.py",
            "exceptions.py",
            "dependencies.py",
        } <= layers
        tests = {path.name for path in (project / "tests" / name).iterdir()}
        assert {"factories.py", "test_router.py", "test_service.py"} <= tests
        assert len(list((project / "migrations" / "versions").glob(f"*_create_{name}.py"))) == 1
    api = (project / "app" / "api.py").read_text(encoding="utf-8")
    assert "from app.orders.router import order_router" in api
    assert 'prefix=f"{API_PREFIX}/line-items"' in api
    models = (project / "app" / "db" / "models.py").read_text(encoding="utf-8")
    assert "from app.line_items.models import LineItem" in models
    assert '"LineItem",' in models


@pytest.mark.bake
@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."]],
    ids=["ruff-check", "ruff-format"],
)
def test_ruff(scaffolded: tuple[Path, dict[str, str]], command: list[str]) -> None:
    project, _ = scaffolded
    done = run_in_project(project, [venv_bin(project, command[0]), *command[1:]])
    assert done.returncode == 0, done.stdout


@pytest.mark.bake
def test_mypy_strict(scaffolded: tuple[Path, dict[str, str]]) -> None:
    project, _ = scaffolded
    command = mypy_command(project)
    done = run_in_project(project, command)
    assert done.returncode == 0, done.stdout
    assert "scaffold" in (project / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.bake
def test_migrations_reach_a_single_head(
    scaffolded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    project, _ = scaffolded
    alembic = venv_bin(project, "alembic")
    heads = run_in_project(project, [alembic, "heads"])
    assert heads.returncode == 0, heads.stdout
    assert len([line for line in heads.stdout.splitlines() if "(head)" in line]) == 1
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/check.db"}
    for command in (["upgrade", "head"], ["check"], ["downgrade", "base"]):
        done = run_in_project(project, [alembic, *command], env=env)
        assert done.returncode == 0, f"alembic {command}: {done.stdout}"


@pytest.mark.bake
def test_the_generated_suite_passes_with_its_coverage_gate(
    scaffolded: tuple[Path, dict[str, str]],
) -> None:
    project, _ = scaffolded
    done = run_in_project(project, ["make", "test", "PYTEST_ARGS=-n 2"], timeout=1800)
    summary = pytest_summary(done.stdout)
    assert done.returncode == 0, done.stdout[-5000:]
    assert summary is not None, done.stdout[-5000:]
    assert "failed" not in summary, summary
    assert "error" not in summary, summary
    assert "Required test coverage of 90" in done.stdout
    # The scaffolded tests were among them.
    python = venv_bin(project, "python")
    listed = run_in_project(project, [python, "-m", "pytest", "--collect-only", "-q", "-n", "0"])
    for name in RESOURCES:
        for module in ("test_router", "test_service"):
            assert f"tests/{name}/{module}.py::" in listed.stdout, listed.stdout[-3000:]


BAD_INPUTS = [
    pytest.param(["orders", "title:str(20)"], "app/orders already exists", id="scaffolded-name"),
    pytest.param(["users", "title:str(20)"], "app/users already exists", id="existing-domain"),
    pytest.param(["refresh_tokens", "a:int"], "table 'refresh_tokens'", id="existing-table"),
    pytest.param(["class", "title:str(20)"], "Python keyword", id="keyword"),
    pytest.param(["classes", "title:str(20)"], "'class' is a Python", id="keyword-singular"),
    pytest.param(["Invoices", "title:str(20)"], "snake_case", id="not-snake-case"),
    pytest.param(["staff", "title:str(20)"], "is not a plural", id="not-plural"),
    pytest.param(["invoices", "title:string"], "unknown type 'string'", id="unknown-type"),
    pytest.param(["invoices", "title:str"], "maximum length", id="str-without-length"),
    pytest.param(["invoices", "owner_id:int"], "'owner_id' is reserved", id="owner_id"),
    pytest.param(["invoices", "created_at:datetime"], "'created_at' is reserved", id="created_at"),
    pytest.param(["invoices", "id:int"], "'id' is reserved", id="id"),
    pytest.param(["invoices", "model_name:str(9)"], "'model_name' is reserved", id="model_"),
    pytest.param(["invoices", "for:int"], "'for' is a Python keyword", id="keyword-field"),
    pytest.param(["invoices", "a:int a:bool"], "more than once", id="repeated-field"),
    pytest.param(["invoices", "a:decimal(2,3)"], "decimal takes", id="bad-decimal"),
    pytest.param(["invoices"], "no fields given", id="no-fields"),
    pytest.param(["", ""], "no name given", id="no-name"),
]


@pytest.mark.bake
@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_refused_input_is_one_line_and_writes_nothing(
    scaffolded: tuple[Path, dict[str, str]], args: list[str], message: str
) -> None:
    project, _ = scaffolded
    status = ["status", "--porcelain", "--untracked-files=all"]
    assert git(project, *status) == ""
    done = scaffold(project, *args)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0], lines[0]
    assert lines[0].startswith("make resource: ")
    assert done.stdout == ""
    assert git(project, *status) == ""


@pytest.mark.bake
def test_make_resource_stops_on_refused_input(scaffolded: tuple[Path, dict[str, str]]) -> None:
    project, _ = scaffolded
    done = make_resource(project, "orders", "title:str(20)")
    assert done.returncode != 0
    assert "make resource: app/orders already exists" in done.stdout


def test_the_scaffold_sources_hold_no_jinja() -> None:
    """Cookiecutter renders every file of the project with Jinja: the scaffolder's code and
    templates must hold nothing it would read as its own."""
    folder = Path(__file__).resolve().parent.parent / "{{cookiecutter.project_slug}}" / "scaffold"
    found = [
        path.name
        for path in folder.rglob("*")
        if path.is_file() and any(m in path.read_text("utf-8") for m in ("{{", "{%", "{#"))
    ]
    assert found == []
