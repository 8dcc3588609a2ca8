"""Post-gen hook behaviour that needs no working package index or extra Python."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from bakery import (
    LOCAL_PYTHON,
    SUPPORTED_PYTHONS,
    Bake,
    bake,
    expected_files,
    load_hook,
    project_files,
    python_available,
    python_version_of,
    run_rendered_hook,
    snapshot,
    unrendered_markers,
)


def secret_key(project_dir: Path) -> str:
    lines = (project_dir / ".env").read_text(encoding="utf-8").splitlines()
    (line,) = [line for line in lines if line.startswith("SECRET_KEY=")]
    return line.removeprefix("SECRET_KEY=")


def assert_same_files(result: Bake) -> None:
    expected = expected_files(result.context())
    actual = project_files(result.project_dir)
    missing, unowned = sorted(expected - actual), sorted(actual - expected)
    assert actual == expected, f"missing: {missing}; not owned by any option: {unowned}"


@pytest.fixture(scope="module")
def without_tests(tmp_path_factory: pytest.TempPathFactory) -> Bake:
    """A default bake that skips the install and the test run."""
    return bake(tmp_path_factory.mktemp("without_tests"), {"run_tests": "no"})


class TestRunTestsOff:
    def test_bake_succeeds(self, without_tests: Bake) -> None:
        assert without_tests.returncode == 0, without_tests.describe()
        assert (without_tests.project_dir / "pyproject.toml").is_file()

    def test_no_virtual_environment_is_created(self, without_tests: Bake) -> None:
        assert not (without_tests.project_dir / ".venv").exists()

    def test_env_file_holds_a_private_secret(self, without_tests: Bake) -> None:
        env_file = without_tests.project_dir / ".env"
        assert "ENVIRONMENT=local" in env_file.read_text(encoding="utf-8").splitlines()
        assert len(secret_key(without_tests.project_dir)) >= 32
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    def test_secret_is_in_no_other_file(self, without_tests: Bake) -> None:
        secret = secret_key(without_tests.project_dir).encode()
        holders = [
            path
            for path in without_tests.project_dir.rglob("*")
            if path.is_file() and path.name != ".env" and secret in path.read_bytes()
        ]
        assert holders == []

    @pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
    def test_env_file_is_git_ignored(self, without_tests: Bake) -> None:
        project = without_tests.project_dir
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=project, check=False)
        shutil.rmtree(project / ".git")
        assert ignored.returncode == 0, "the generated .gitignore must ignore .env"

    def test_output_explains_how_to_install_and_test_later(self, without_tests: Bake) -> None:
        output = without_tests.output
        assert "run_tests is off" in output
        assert f"cd {without_tests.project_dir}" in output
        assert f"    cd {without_tests.project_dir}\n    make install\n    make test\n" in output

    def test_files_match_the_template(self, without_tests: Bake) -> None:
        assert_same_files(without_tests)

    def test_no_unrendered_jinja(self, without_tests: Bake) -> None:
        assert unrendered_markers(without_tests.project_dir) == []

    @pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
    @pytest.mark.parametrize(
        ("variables", "refusal"),
        [
            (["INSTALLER=conda"], "INSTALLER must be uv or pip, not 'conda'"),
            (["INSTALLER=uv", "UV=/nowhere/uv"], "INSTALLER=uv, but no /nowhere/uv found"),
        ],
    )
    def test_make_install_refuses_a_bad_installer_before_making_anything(
        self, without_tests: Bake, tmp_path: Path, variables: list[str], refusal: str
    ) -> None:
        project = shutil.copytree(without_tests.project_dir, tmp_path / "project")
        made = subprocess.run(
            ["make", "install", *variables], cwd=project, capture_output=True, text=True
        )
        assert made.returncode != 0
        assert refusal in made.stderr
        assert not (project / ".venv").exists()

    def test_makefile_has_the_advertised_targets(self, without_tests: Bake) -> None:
        makefile = (without_tests.project_dir / "Makefile").read_text(encoding="utf-8")
        for target in ("run", "test"):
            assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no '{target}' target"


def test_skip_install_variable(tmp_path: Path) -> None:
    result = bake(tmp_path, env={"FASTAPI_TEMPLATE_SKIP_INSTALL": "1"})
    assert result.returncode == 0, result.describe()
    assert "FASTAPI_TEMPLATE_SKIP_INSTALL is set" in result.output
    assert not (result.project_dir / ".venv").exists()
    assert (result.project_dir / ".env").is_file()


def test_post_gen_hook_is_idempotent(tmp_path: Path) -> None:
    result = bake(tmp_path, {"run_tests": "no", "include_example_resource": "no"})
    assert result.returncode == 0, result.describe()
    before = snapshot(result.project_dir)
    assert ".env" in before
    rerun = run_rendered_hook(
        "post_gen_project", result.context(), cwd=result.project_dir, script_dir=tmp_path / "hook"
    )
    assert rerun.returncode == 0, rerun.stdout
    assert snapshot(result.project_dir) == before


def test_example_resource_can_be_left_out(tmp_path: Path) -> None:
    result = bake(tmp_path, {"run_tests": "no", "include_example_resource": "no"})
    assert result.returncode == 0, result.describe()
    project = result.project_dir
    assert not (project / "app" / "items").exists()
    assert not (project / "tests" / "items").exists()
    for relative in ("app/api.py", "app/db/models.py"):
        text = (project / relative).read_text(encoding="utf-8")
        assert not re.search(r"items?\b", text, re.IGNORECASE), f"{relative} mentions items"
    importers = [
        path.relative_to(project)
        for path in project.rglob("*.py")
        if "app.items" in path.read_text(encoding="utf-8")
    ]
    assert importers == []
    assert_same_files(result)
    assert unrendered_markers(project) == []


def test_default_slug_is_made_from_any_name(tmp_path: Path) -> None:
    """With --no-input, the slug comes from the name through cookiecutter's slugify, so a name
    with spaces, capitals and punctuation still gives a valid package and folder name."""
    result = bake(
        tmp_path, {"run_tests": "no", "project_name": "Acme (EU) Billing"}, slug="acme_eu_billing"
    )
    assert result.returncode == 0, result.describe()
    assert result.context()["cookiecutter"]["project_slug"] == "acme_eu_billing"
    project = json.loads((result.project_dir / "app" / "project.json").read_text(encoding="utf-8"))
    assert project == {
        "name": "Acme (EU) Billing",
        "slug": "acme_eu_billing",
        "description": "An async FastAPI service.",
    }
    assert_same_files(result)


@pytest.mark.parametrize("use_redis", ["yes", "no"])
def test_redis_files_and_dependency_follow_use_redis(tmp_path: Path, use_redis: str) -> None:
    result = bake(tmp_path, {"run_tests": "no", "use_redis": use_redis})
    assert result.returncode == 0, result.describe()
    project = result.project_dir
    redis_tests = project / "tests" / "core" / "test_rate_limit_redis.py"
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    config = (project / "app" / "core" / "ratelimit_settings.py").read_text(encoding="utf-8")
    assert redis_tests.is_file() is (use_redis == "yes")
    assert ('"limits[async-redis]>=' in pyproject) is (use_redis == "yes")
    assert ("REDIS_URL" in config) is (use_redis == "yes")
    assert '"limits' in pyproject
    assert_same_files(result)
    assert unrendered_markers(project) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_database_files_and_driver_follow_the_option(tmp_path: Path, database: str) -> None:
    result = bake(tmp_path, {"run_tests": "no", "database": database})
    assert result.returncode == 0, result.describe()
    project = result.project_dir
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    config = (project / "app" / "core" / "db_settings.py").read_text(encoding="utf-8")
    assert (project / "tests" / "test_outage.py").is_file() is (database == "postgresql")
    assert ('"asyncpg>=' in pyproject) is (database == "postgresql")
    assert ('"aiosqlite>=' in pyproject) is (database == "sqlite")
    assert ("DATABASE_POOL_SIZE" in config) is (database == "postgresql")
    assert_same_files(result)
    assert unrendered_markers(project) == []


def test_missing_python_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    missing = "3.13" if LOCAL_PYTHON != "3.13" else "3.12"
    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    result = bake(
        tmp_path / "bake",
        {"python_version": missing},
        env={
            "PATH": str(nowhere),
            "PYENV_ROOT": str(nowhere),
            "UV_PYTHON_INSTALL_DIR": str(nowhere),
        },
    )
    assert result.returncode == 0, result.describe()
    assert f"warning: Python {missing} was not found" in result.output
    assert f"The project is kept at {result.project_dir}" in result.output
    assert "make test" in result.output
    assert (result.project_dir / "pyproject.toml").is_file()
    assert not (result.project_dir / ".venv").exists()


NO_INDEX_ENV = {
    "uv": {
        "FASTAPI_TEMPLATE_INSTALLER": "uv",
        "UV_OFFLINE": "1",
        "UV_NO_CONFIG": "1",
    },
    "pip": {
        "FASTAPI_TEMPLATE_INSTALLER": "pip",
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    },
}


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_unreachable_package_index_keeps_the_project(tmp_path: Path, installer: str) -> None:
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {**NO_INDEX_ENV[installer], "UV_CACHE_DIR": str(cache), "PIP_CACHE_DIR": str(cache)}
    result = bake(
        tmp_path / "bake",
        {"python_version": LOCAL_PYTHON},
        env=env,
        unset_prefixes=("UV_", "PIP_"),
    )
    assert result.returncode == 0, result.describe()
    output = result.output
    assert "warning: setting up the project's virtual environment failed" in output
    assert "Last lines of the installer output:" in output
    assert f"The project is kept at {result.project_dir}" in output
    assert re.search(r"^    \| ", output, re.MULTILINE), "no line of the installer's output"
    command = "make install PYTHON=" + (".* INSTALLER=pip" if installer == "pip" else "")
    assert re.search(rf"^    {command}.*\n    make test$", output, re.MULTILINE), output
    assert "Running the generated test suite" not in output
    assert (result.project_dir / "pyproject.toml").is_file()
    # make install made .venv with the Python the hook found, before the install failed.
    assert python_version_of(result.project_dir / ".venv/bin/python") == LOCAL_PYTHON


OTHER_PYTHONS = [version for version in SUPPORTED_PYTHONS if version != LOCAL_PYTHON]


@pytest.mark.skipif(
    not any(map(python_available, OTHER_PYTHONS)), reason="needs a second Python version"
)
def test_a_venv_of_another_python_is_replaced(tmp_path: Path) -> None:
    """The rerun hook removes a .venv of the wrong Python; make install makes it again with
    the right one (then pip, offline, fails: a warning, exit status 0)."""
    result = bake(tmp_path / "bake", {"run_tests": "no", "python_version": LOCAL_PYTHON})
    assert result.returncode == 0, result.describe()
    project = result.project_dir
    other = next(filter(None, map(load_hook("post_gen_project").find_python, OTHER_PYTHONS)))
    subprocess.run([other, "-m", "venv", "--without-pip", project / ".venv"], check=True)
    context = result.context()
    context["cookiecutter"]["run_tests"] = True
    empty = tmp_path / "empty-cache"
    rerun = run_rendered_hook(
        "post_gen_project",
        context,
        cwd=project,
        script_dir=tmp_path / "hook",
        env={**NO_INDEX_ENV["pip"], "PIP_CACHE_DIR": str(empty)},
    )
    assert rerun.returncode == 0, rerun.stdout
    assert f"Replacing {project / '.venv'}: it does not run Python {LOCAL_PYTHON}" in rerun.stdout
    assert "warning: setting up the project's virtual environment failed" in rerun.stdout
    assert python_version_of(project / ".venv/bin/python") == LOCAL_PYTHON
