"""Full bakes: the post-gen hook installs the project and runs its tests.

Each ``Test...`` class bakes one variant once (a class-scoped fixture) and runs
every check on it. Run with ``--dist loadscope`` so that a class stays on one
xdist worker and no variant is baked twice.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import sys
import tomllib
from contextlib import nullcontext
from fnmatch import fnmatch
from pathlib import Path
from typing import ClassVar

import pytest
from bakery import (
    DEFAULT_SLUG,
    HOSTILE_NAME,
    QUESTIONS,
    TEMPLATE_DIR,
    Bake,
    bake,
    expected_files,
    load_hook,
    one_at_a_time,
    project_files,
    pytest_summary,
    python_available,
    run_in_project,
    unrendered_markers,
    venv_bin,
)
from browser import register, require_chromium, served, summary, visit_docs
from containers import (
    check_compose,
    check_dockerfile,
    check_kubernetes,
    lint_dockerfile,
    require_kubectl,
)
from monitoring import check_prometheus_scrape
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from podman import check_image


def mypy_command(project_dir: Path) -> list[str | Path]:
    """mypy as the generated project configures it, or strict on its code folders."""
    config = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
    mypy = venv_bin(project_dir, "mypy")
    if config.get("tool", {}).get("mypy", {}).get("files"):
        return [mypy]
    folders = [name for name in ("app", "tests", "migrations") if (project_dir / name).is_dir()]
    return [mypy, "--strict", *folders]


class BakeChecks:
    """Checks that every successful bake must pass; subclasses pick the answers."""

    extra_context: ClassVar[dict[str, str]] = {}
    env: ClassVar[dict[str, str]] = {}
    # Answers typed at the prompts instead of --no-input, in cookiecutter.json order.
    answers: ClassVar[tuple[str, ...] | None] = None
    slug: ClassVar[str] = DEFAULT_SLUG
    python_version: ClassVar[str] = "3.12"
    installer: ClassVar[str] = "uv"
    # Literal text allowed to look like Jinja (a project name with braces in it).
    allowed_literals: ClassVar[tuple[str, ...]] = ()

    @pytest.fixture(scope="class")
    @classmethod
    def baked(cls, tmp_path_factory: pytest.TempPathFactory) -> Bake:
        if not python_available(cls.python_version):
            pytest.skip(f"Python {cls.python_version} is not installed on this machine")
        # A PostgreSQL bake's suite opens dozens of connections (real servers, concurrent
        # requests); two at once went past the server's 100, so those bakes take turns, in
        # every xdist worker of this run (the lock file is in the run's shared temp folder).
        postgresql = bake_answers(cls)["database"] == "postgresql"
        lock = tmp_path_factory.getbasetemp().parent / "postgresql-bakes.lock"
        with one_at_a_time(lock) if postgresql else nullcontext():
            return bake(
                tmp_path_factory.mktemp(cls.__name__),
                {**cls.extra_context, "python_version": cls.python_version},
                env={"FASTAPI_TEMPLATE_INSTALLER": cls.installer, **cls.env},
                keep_project_on_failure=True,
                answers=cls.answers,
                slug=cls.slug,
            )

    @pytest.fixture
    def project(self, baked: Bake) -> Path:
        """The generated project with its virtual environment.

        The bake keeps the project even when the generated tests fail, so these
        checks still report on it; only test_generated_tests_pass needs success.
        """
        assert (baked.project_dir / "pyproject.toml").is_file(), baked.describe()
        assert venv_bin(baked.project_dir, "python").exists(), baked.describe()
        return baked.project_dir

    def test_generated_tests_pass(self, baked: Bake) -> None:
        assert baked.returncode == 0, baked.describe()
        summary = pytest_summary(baked.output)
        assert summary is not None, baked.describe()
        assert re.search(r"\d+ passed", summary), summary
        assert "failed" not in summary, summary
        assert "error" not in summary, summary
        assert "Success:" in baked.output

    def test_installer(self, baked: Bake) -> None:
        assert f"dev dependencies with {self.installer}" in baked.output, baked.describe()

    def test_installed_from_a_committable_lock(self, project: Path) -> None:
        """uv bakes write uv.lock, the venv holds exactly what it pins, and git keeps it."""
        if self.installer != "uv":
            assert not (project / "uv.lock").exists()
            return
        assert (project / "uv.lock").is_file()
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        checks = ([uv, "lock", "--check"], [uv, "sync", "--locked", "--check", "--group", "dev"])
        for command in checks:
            result = run_in_project(project, [*command, "--offline"], env=self.env)
            assert result.returncode == 0, f"{command}: {result.stdout}"
        ignored = (project / ".gitignore").read_text(encoding="utf-8").splitlines()
        assert not [line for line in ignored if fnmatch("uv.lock", line.strip().lstrip("/"))]

    def test_venv_runs_the_requested_python(self, project: Path) -> None:
        result = run_in_project(project, [venv_bin(project, "python"), "--version"])
        assert result.stdout.startswith(f"Python {self.python_version}."), result.stdout

    def test_ruff_check(self, project: Path) -> None:
        result = run_in_project(project, [venv_bin(project, "ruff"), "check", "."])
        assert result.returncode == 0, result.stdout

    def test_ruff_format(self, project: Path) -> None:
        result = run_in_project(project, [venv_bin(project, "ruff"), "format", "--check", "."])
        assert result.returncode == 0, result.stdout

    def test_mypy(self, project: Path) -> None:
        result = run_in_project(project, mypy_command(project))
        assert result.returncode == 0, result.stdout

    def test_no_unrendered_jinja(self, project: Path) -> None:
        assert unrendered_markers(project, self.allowed_literals) == []

    def test_files_match_the_template(self, baked: Bake, project: Path) -> None:
        expected = expected_files(baked.context())
        actual = project_files(project)
        missing, unowned = sorted(expected - actual), sorted(actual - expected)
        assert actual == expected, f"missing: {missing}; not owned by any option: {unowned}"

    def test_dockerfile_passes_hadolint(self, project: Path) -> None:
        result = lint_dockerfile(project)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_container_files_match_the_options(self, baked: Bake, project: Path) -> None:
        answers = baked.context()["cookiecutter"]
        check_dockerfile(project, answers)
        check_compose(project, answers)

    def test_env_file(self, project: Path) -> None:
        lines = (project / ".env").read_text(encoding="utf-8").splitlines()
        secrets = [line.removeprefix("SECRET_KEY=") for line in lines if "SECRET_KEY=" in line]
        assert len(secrets) == 1
        assert len(secrets[0]) >= 32


@pytest.mark.bake
class TestDefault(BakeChecks):
    def test_example_resource_is_included(self, project: Path) -> None:
        assert (project / "app" / "items").is_dir()
        assert (project / "tests" / "items").is_dir()

    def test_swagger_ui_works_offline_in_a_browser(self, project: Path, tmp_path: Path) -> None:
        """/docs in headless Chromium: it loads everything from the service, breaks none of its
        policy, authorizes with a real login and calls GET /users/me from the page."""
        chromium = require_chromium()
        email, password = "docs@example.com", "docs-password-0123456789"
        with served(project, tmp_path / "docs.db") as base:
            register(base, email, password)
            visit = visit_docs(base, chromium, email, password)
        report = summary(visit)
        assert visit.failed_step is None, report
        assert visit.status == 200, report
        assert visit.sent_token, report
        assert visit.off_machine == [], report
        assert visit.violations == [], report
        assert visit.page_errors == [], report
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(
            visit.local
        ), report

    def test_the_image_builds_and_runs_as_in_production(
        self, baked: Bake, project: Path, tmp_path: Path
    ) -> None:
        """Built with podman from the Dockerfile as generated, migrated and served by it."""
        check_image(project, baked.context()["cookiecutter"], tmp_path)

    def test_a_real_prometheus_scrapes_the_served_metrics(
        self, project: Path, tmp_path: Path
    ) -> None:
        check_prometheus_scrape(project, tmp_path)


@pytest.mark.bake
class TestPython311WithPip(BakeChecks):
    """Python 3.11 and the pip fallback used on machines without uv."""

    python_version = "3.11"
    installer = "pip"
    extra_context: ClassVar[dict[str, str]] = {"use_redis": "yes"}

    def test_venv_was_made_by_venv_and_pip(self, project: Path) -> None:
        assert venv_bin(project, "pip").exists()


@pytest.mark.bake
class TestPython313(BakeChecks):
    python_version = "3.13"
    extra_context: ClassVar[dict[str, str]] = {"database": "postgresql"}


# Questions that choose no variant of the generated code: the hook's own behaviour.
NOT_VARIANTS = frozenset({"run_tests"})
# What "everything on" and "everything off" mean for each option that chooses a variant (the
# Python version is neither).
ALL_ON: dict[str, object] = {
    "database": "postgresql",
    "use_redis": True,
    "include_example_resource": True,
    "observability": "opentelemetry",
    "jobs_engine": "dramatiq",
}
ALL_OFF: dict[str, object] = {
    "database": "sqlite",
    "use_redis": False,
    "include_example_resource": False,
    "observability": "none",
    "jobs_engine": "embedded",
}


def variant_options() -> dict[str, list[object]]:
    """Each question of cookiecutter.json that chooses a variant, with its possible values,
    the default first."""
    questions = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    options: dict[str, list[object]] = {}
    for name, default in questions.items():
        if name.startswith("_") or name in NOT_VARIANTS:
            continue
        if isinstance(default, bool):
            options[name] = [default, not default]  # the default first, as for a choice
        elif isinstance(default, list):
            options[name] = list(default)
    return options


def bake_answers(bake_class: type[BakeChecks]) -> dict[str, object]:
    """The variant a bake class generates: the defaults, then its own answers."""
    hook = load_hook("post_gen_project")
    answers = {name: values[0] for name, values in variant_options().items()}
    for name, value in bake_class.extra_context.items():
        answers[name] = hook.as_bool(value) if isinstance(answers[name], bool) else value
    answers["python_version"] = bake_class.python_version
    return answers


def test_the_bakes_cover_every_pair_of_option_values() -> None:
    """Pairwise: for any two options, every combination of their values is baked by some
    class below, so an option added to cookiecutter.json and to no bake fails here. One bake
    also has every option on and one every option off."""
    options = variant_options()
    rows = [bake_answers(bake_class) for bake_class in BakeChecks.__subclasses__()]
    missing = [
        f"{first}={one!r} with {second}={other!r}"
        for first, second in itertools.combinations(options, 2)
        for one in options[first]
        for other in options[second]
        if not any(row[first] == one and row[second] == other for row in rows)
    ]
    assert missing == [], missing
    assert set(ALL_ON) == set(ALL_OFF) == set(options) - {"python_version"}
    assert any(all(row[name] == value for name, value in ALL_ON.items()) for row in rows)
    assert any(all(row[name] == value for name, value in ALL_OFF.items()) for row in rows)


def lower_bounds(project_dir: Path) -> dict[str, Version]:
    """The ``>=`` bound of each direct dependency: the project's and its dev group's."""
    config = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [*config["project"]["dependencies"], *config["dependency-groups"]["dev"]]
    bounds: dict[str, Version] = {}
    for line in declared:
        requirement = Requirement(line)
        # A marker would make a dependency optional for some Pythons or platforms, and then
        # the lock need not hold it at its bound; none has one, so none is exempt.
        assert requirement.marker is None, f"{line}: decide how a marker meets its bound"
        minimums = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(minimums) == 1, f"{line}: a direct dependency declares one lower bound"
        bounds[canonicalize_name(requirement.name)] = Version(minimums[0])
    return bounds


def locked_versions(project_dir: Path) -> dict[str, set[Version]]:
    """Every version uv.lock holds of each package (a forked resolution may hold several)."""
    lock = tomllib.loads((project_dir / "uv.lock").read_text(encoding="utf-8"))
    versions: dict[str, set[Version]] = {}
    for package in lock["package"]:
        if "version" in package:
            name = canonicalize_name(package["name"])
            versions.setdefault(name, set()).add(Version(package["version"]))
    return versions


@pytest.mark.bake
class TestWithoutExampleResource(BakeChecks):
    """Also resolved at the lowest versions that pyproject.toml allows for its direct
    dependencies (uv's lowest-direct), so the generated suite, ruff and mypy run at the
    declared lower bounds and a bound that is too low fails here. This existing bake, the
    fastest one, carries it: another bake would cost minutes of CI time."""

    extra_context: ClassVar[dict[str, str]] = {"include_example_resource": "no"}
    env: ClassVar[dict[str, str]] = {"UV_RESOLUTION": "lowest-direct"}

    def test_locked_at_the_declared_lower_bounds(self, project: Path) -> None:
        lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
        assert lock["options"]["resolution-mode"] == "lowest-direct"
        locked = locked_versions(project)
        bounds = lower_bounds(project)
        assert bounds
        off = {
            name: f">={bound} declared, {sorted(map(str, locked.get(name, set())))} locked"
            for name, bound in bounds.items()
            if locked.get(name) != {bound}
        }
        assert off == {}, off

    def test_example_resource_is_gone(self, project: Path) -> None:
        assert not (project / "app" / "items").exists()
        assert not (project / "tests" / "items").exists()
        for relative in ("app/api.py", "app/db/models.py"):
            text = (project / relative).read_text(encoding="utf-8")
            assert not re.search(r"items?\b", text, re.IGNORECASE), f"{relative} mentions items"


@pytest.mark.bake
class TestHostileProjectName(BakeChecks):
    """A name full of quotes, backslashes, SQL, Jinja and shell syntax, typed at the prompt;
    with every option on (their answers are the prompts' defaults)."""

    extra_context: ClassVar[dict[str, str]] = {
        "database": "postgresql",
        "use_redis": "yes",
        "observability": "opentelemetry",
        "jobs_engine": "dramatiq",
    }

    slug = "robert_service"
    # project_name, project_slug, then the defaults for every other question.
    answers = (HOSTILE_NAME, "robert_service", *[""] * (len(QUESTIONS) - 2))
    allowed_literals = ("{{ x }}",)

    def test_the_image_builds_and_runs_as_in_production(
        self, baked: Bake, project: Path, tmp_path: Path
    ) -> None:
        """Built with podman from the Dockerfile as generated, migrated and served by it."""
        check_image(project, baked.context()["cookiecutter"], tmp_path)

    def test_name_is_in_the_readme(self, project: Path) -> None:
        assert HOSTILE_NAME in (project / "README.md").read_text(encoding="utf-8")

    def test_name_is_the_api_title(self, project: Path) -> None:
        probe = "import json; from app.main import app; print(json.dumps(app.openapi()['info']))"
        result = run_in_project(project, [venv_bin(project, "python"), "-c", probe])
        assert result.returncode == 0, result.stdout
        info = json.loads(result.stdout.strip().splitlines()[-1])
        assert info["title"] == HOSTILE_NAME

    def test_no_shell_ran_the_name(self, baked: Bake) -> None:
        places = [baked.output_dir.parent, TEMPLATE_DIR / "hooks", Path.cwd(), Path.home()]
        found = [place / "pwned" for place in places if (place / "pwned").exists()]
        found += list(baked.output_dir.parent.rglob("pwned"))
        assert found == []


def service_reachable(name: str, port: int, probe: bytes = b"", answer: bytes = b"") -> bool:
    """Whether a local service answers; in CI its absence is a failure, not a skip."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if probe:
                sock.sendall(probe)
                return sock.recv(16).startswith(answer)
            return True
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} must run on 127.0.0.1:{port} in CI")
        return False


def assert_nothing_skipped(baked: Bake) -> None:
    """The hook's run of the generated suite skipped nothing: every service test ran."""
    summary = pytest_summary(baked.output)
    assert summary is not None, baked.describe()
    assert "skipped" not in summary, summary


@pytest.mark.bake
class TestWithRedis(BakeChecks):
    """Rate limits in Redis: the generated suite runs its Redis tests against the local server.
    Also the OpenTelemetry variant (observability), whose tracing tests run in the same suite."""

    python_version = "3.13"
    extra_context: ClassVar[dict[str, str]] = {
        "use_redis": "yes",
        "include_example_resource": "no",
        "observability": "opentelemetry",
    }

    def test_redis_is_a_dependency(self, project: Path) -> None:
        config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        dependencies = config["project"]["dependencies"]
        assert any(dep.startswith("limits[async-redis]>=") for dep in dependencies)

    def test_opentelemetry_is_a_dependency(self, project: Path) -> None:
        config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        names = {re.split(r"[\[>=]", dep)[0] for dep in config["project"]["dependencies"]}
        assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= names
        assert {"opentelemetry-instrumentation-sqlalchemy"} <= names
        # FastAPI's own OpenTelemetry support (FastAPI(telemetry=...)) came in 0.142.
        assert "fastapi>=0.142" in config["project"]["dependencies"]
        assert (project / "tests" / "core" / "test_tracing.py").is_file()


@pytest.mark.bake
class TestPostgreSQL(BakeChecks):
    """PostgreSQL: the generated suite runs on throw-away databases of the local server."""

    python_version = "3.11"
    extra_context: ClassVar[dict[str, str]] = {
        "database": "postgresql",
        "include_example_resource": "no",
        "observability": "opentelemetry",
        "jobs_engine": "dramatiq",
    }

    def test_asyncpg_replaces_aiosqlite(self, project: Path) -> None:
        config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        dependencies = config["project"]["dependencies"]
        assert any(dep.startswith("asyncpg>=") for dep in dependencies)
        assert not any(dep.startswith("aiosqlite") for dep in dependencies)

    def test_postgresql_tests_ran_and_none_was_skipped(self, baked: Bake, project: Path) -> None:
        if not service_reachable("PostgreSQL", 5432):
            pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
        assert (project / "tests" / "test_outage.py").is_file()
        assert_nothing_skipped(baked)

    def test_kubernetes_manifests_render_validate_and_fit(self, baked: Bake, project: Path) -> None:
        answers = baked.context()["cookiecutter"]
        check_kubernetes(project, answers, require_kubectl())


@pytest.mark.bake
class TestDramatiq(BakeChecks):
    """Jobs carried by RabbitMQ to Dramatiq workers, on SQLite: the generated suite runs the
    engine's tests against the local RabbitMQ, with worker processes started and killed."""

    python_version = "3.13"
    extra_context: ClassVar[dict[str, str]] = {"jobs_engine": "dramatiq"}

    def test_dramatiq_is_a_dependency_and_make_worker_runs_it(self, project: Path) -> None:
        config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        assert any(
            dep.startswith("dramatiq[rabbitmq]>=") for dep in config["project"]["dependencies"]
        )
        assert config["project"]["scripts"]["worker"] == "app.jobs.worker:main"
        makefile = (project / "Makefile").read_text(encoding="utf-8")
        assert re.search(r"^worker: .*\n\t\$\(BIN\)/worker$", makefile, re.MULTILINE)

    def test_rabbitmq_tests_ran_and_none_was_skipped(self, baked: Bake, project: Path) -> None:
        if not service_reachable("RabbitMQ", 5672):
            pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
        assert (project / "tests" / "jobs" / "test_dramatiq.py").is_file()
        assert_nothing_skipped(baked)
