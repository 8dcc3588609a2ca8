"""Fast checks of the hook scripts' functions, without baking a project."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bakery import (
    HOOKS_DIR,
    HOSTILE_NAME,
    PROJECT_TEMPLATE_DIR,
    VALID_ANSWERS,
    load_hook,
    render_hook,
    run_rendered_hook,
)

pre = load_hook("pre_gen_project")
post = load_hook("post_gen_project")


def context_with(**answers: Any) -> dict[str, Any]:
    return {"cookiecutter": {**VALID_ANSWERS, **answers}}


# --- answers travel into the hooks as data -------------------------------------------

TRICKY_VALUES = [
    HOSTILE_NAME,
    "three \"\"\" double and ''' single quotes, then a trailing backslash \\",
    'ends with a quote "',
    "a line\nbreak, a\u2028separator, a\ttab and a \x00 NUL",
    "unicode caf\u00e9 \U0001f680 and escapes written out: \\N{BULLET} \\u0041 \\x41",
    "<script>&amp;</script>",
    "",
]


@pytest.mark.parametrize("hook", ["pre_gen_project", "post_gen_project"])
@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_rendered_hook_reads_every_answer_back_exactly(hook: str, value: str) -> None:
    context = context_with(project_name=value, description=value, author_name=value)
    source = render_hook(hook, context)
    module = ModuleType(f"rendered_{hook}")
    exec(compile(source, f"{hook}.py", "exec"), module.__dict__)
    assert module.load_answers(module.ANSWERS_JSON) == context["cookiecutter"]


def test_rendered_pre_gen_hook_accepts_a_hostile_but_valid_name(tmp_path: Path) -> None:
    result = run_rendered_hook(
        "pre_gen_project",
        context_with(project_name=HOSTILE_NAME, project_slug="robert_service"),
        cwd=tmp_path,
        script_dir=tmp_path / "scripts",
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert not any(path.name == "pwned" for path in tmp_path.rglob("*"))


# --- pre-gen validation -------------------------------------------------------------


def test_defaults_are_valid() -> None:
    assert pre.find_problem(VALID_ANSWERS) is None


@pytest.mark.parametrize(
    "slug", ["my_service", "a", "service2", "orders_api", "x" * pre.SLUG_MAX_LENGTH]
)
def test_valid_slugs(slug: str) -> None:
    assert pre.check_project_slug(slug) is None


@pytest.mark.parametrize(
    "slug",
    [
        "My-Service",
        "my-service",
        "1service",
        "my service",
        "_private",
        "service.",
        "",
        "class",
        "import",
        "app",
        "tests",
        "test",
        "json",
        "fastapi",
        "x" * (pre.SLUG_MAX_LENGTH + 1),
    ],
)
def test_invalid_slugs_are_explained_on_one_line(slug: str) -> None:
    problem = pre.check_project_slug(slug)
    assert isinstance(problem, str)
    assert problem.startswith("project_slug")
    assert "\n" not in problem


def test_every_dependency_and_top_level_package_is_a_reserved_slug() -> None:
    """A project named like one of its own dependencies or folders would shadow it."""
    pyproject = (PROJECT_TEMPLATE_DIR / "pyproject.toml").read_text(encoding="utf-8")
    requirements = re.findall(r'^\s*"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=', pyproject, re.M)
    names = {name.lower().replace("-", "_").replace(".", "_") for name in requirements}
    folders = {
        path.name
        for path in PROJECT_TEMPLATE_DIR.iterdir()
        if path.is_dir() and not path.name.startswith(".")
    }
    assert len(names) > 20  # the pattern found the dependency lists of every option
    assert names | folders <= pre.RESERVED_SLUGS, sorted((names | folders) - pre.RESERVED_SLUGS)


def test_slug_message_suggests_a_valid_slug() -> None:
    assert "'my_service'" in pre.check_project_slug("My-Service")


@pytest.mark.parametrize(
    "email", ["you@example.com", "first.last+tag@mail.example.co.uk", "jos\u00e9@example.org"]
)
def test_plausible_emails(email: str) -> None:
    assert pre.check_author_email(email) is None


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "a@b",
        "a b@c.d",
        "a@b@c.d",
        "@example.com",
        "a@.com",
        "a@example.",
        '"a"@b.c',
        "a@b.c\n",
        "",
    ],
)
def test_implausible_emails(email: str) -> None:
    problem = pre.check_author_email(email)
    assert isinstance(problem, str)
    assert problem.startswith("author_email")
    assert "\n" not in problem


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_supported_python_versions(version: str) -> None:
    assert pre.check_python_version(version) is None


@pytest.mark.parametrize("version", ["3.10", "3.14", "3", "", 3.12])
def test_unsupported_python_versions(version: object) -> None:
    problem = pre.check_python_version(version)
    assert isinstance(problem, str)
    assert "3.11, 3.12, 3.13" in problem


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_project_name(name: str) -> None:
    assert pre.check_project_name(name) == "project_name must not be empty"


@pytest.mark.parametrize(
    "text", ["two\nlines", "carriage\rreturn", "tab\there", "nul\x00", "sep\u2028arator"]
)
def test_multi_line_texts_are_rejected(text: str) -> None:
    for key in ("project_name", "description", "author_name"):
        problem = pre.find_problem({**VALID_ANSWERS, key: text})
        assert isinstance(problem, str)
        assert problem.startswith(f"{key} must be a single line")
        assert "\n" not in problem


def test_non_ascii_single_line_text_is_fine() -> None:
    name = "Caf\u00e9 \u00dcber-Service \U0001f680"
    assert pre.find_problem({**VALID_ANSWERS, "project_name": name, "description": name}) is None


@pytest.mark.parametrize("value", [True, False, "yes", "no", "1", "0"])
def test_boolean_answers(value: object) -> None:
    assert pre.find_problem({**VALID_ANSWERS, "run_tests": value}) is None


def test_non_boolean_answer_is_rejected() -> None:
    problem = pre.find_problem({**VALID_ANSWERS, "include_example_resource": "maybe"})
    assert problem == "include_example_resource must be yes or no, got 'maybe'"


# --- post-gen building blocks -------------------------------------------------------


def variant_files(paths: tuple[str, ...], *names: str) -> list[str]:
    """The template's `<name>_<variant>.py` files for each `<name>.py` in ``paths``."""
    return [
        Path(path).with_name(f"{Path(path).stem}_{name}{Path(path).suffix}").as_posix()
        for path in paths
        for name in names
    ]


def lay_out(project: Path, relatives: list[str]) -> None:
    """Files holding their own name, and folders (no suffix) holding a file of their own."""
    for relative in relatives:
        path = project / relative
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(relative, encoding="utf-8")
        else:
            (path / "base").mkdir(parents=True)
            (path / "base" / "kustomization.yaml").write_text("", encoding="utf-8")


def assert_kept(project: Path, paths: tuple[str, ...], kept: str, *gone: str) -> None:
    """Each `<name>.py` holds its `kept` variant, and no variant file is left."""
    for path in paths:
        expected = variant_files((path,), kept)[0]
        assert (project / path).read_text(encoding="utf-8") == expected
    leftovers = variant_files(paths, kept, *gone)
    assert [name for name in leftovers if (project / name).exists()] == []


@pytest.mark.parametrize("included", [True, False])
def test_choose_example_resource_is_idempotent(tmp_path: Path, included: bool) -> None:
    names = ("with_items", "without_items")
    files = variant_files(post.EXAMPLE_RESOURCE_VARIANTS, *names)
    lay_out(tmp_path, [*files, "app/items/models.py", "tests/items/test_router.py"])
    lay_out(tmp_path, ["app/users/models.py"])
    post.choose_example_resource(tmp_path, included)
    post.choose_example_resource(tmp_path, included)
    kept, gone = names if included else names[::-1]
    assert_kept(tmp_path, post.EXAMPLE_RESOURCE_VARIANTS, kept, gone)
    for folder in post.EXAMPLE_RESOURCE_DIRS:
        assert (tmp_path / folder).is_dir() is included
    assert (tmp_path / "app/users/models.py").is_file()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_choose_database_is_idempotent(tmp_path: Path, database: str) -> None:
    files = variant_files(post.DATABASE_VARIANTS, *post.DATABASES)
    lay_out(tmp_path, [*files, *post.POSTGRESQL_ONLY_PATHS, *post.SQLITE_ONLY_PATHS])
    lay_out(tmp_path, ["tests/test_concurrency.py"])
    post.choose_database(tmp_path, database)
    post.choose_database(tmp_path, database)
    others = [name for name in post.DATABASES if name != database]
    assert_kept(tmp_path, post.DATABASE_VARIANTS, database, *others)
    for name in post.POSTGRESQL_ONLY_PATHS:
        assert (tmp_path / name).exists() is (database == "postgresql"), name
    for name in post.SQLITE_ONLY_PATHS:
        assert (tmp_path / name).exists() is (database == "sqlite"), name
    assert (tmp_path / "tests/test_concurrency.py").is_file()


@pytest.mark.parametrize("use_redis", [True, False])
def test_choose_rate_limit_storage_is_idempotent(tmp_path: Path, use_redis: bool) -> None:
    names = ("redis", "memory")
    files = variant_files(post.RATE_LIMIT_STORAGE_VARIANTS, *names)
    lay_out(tmp_path, [*files, *post.REDIS_FILES, "tests/core/test_rate_limit.py"])
    post.choose_rate_limit_storage(tmp_path, use_redis)
    post.choose_rate_limit_storage(tmp_path, use_redis)
    kept, gone = names if use_redis else names[::-1]
    assert_kept(tmp_path, post.RATE_LIMIT_STORAGE_VARIANTS, kept, gone)
    for name in post.REDIS_FILES:
        assert (tmp_path / name).is_file() is use_redis
    assert (tmp_path / "tests/core/test_rate_limit.py").is_file()


@pytest.mark.parametrize("observability", ["none", "opentelemetry"])
def test_choose_observability_is_idempotent(tmp_path: Path, observability: str) -> None:
    names = ("opentelemetry", "none")
    files = variant_files(post.OBSERVABILITY_VARIANTS, *names)
    lay_out(tmp_path, [*files, *post.OPENTELEMETRY_FILES, "tests/core/test_logging.py"])
    post.choose_observability(tmp_path, observability)
    post.choose_observability(tmp_path, observability)
    traced = observability == "opentelemetry"
    kept, gone = names if traced else names[::-1]
    assert_kept(tmp_path, post.OBSERVABILITY_VARIANTS, kept, gone)
    for name in post.OPENTELEMETRY_FILES:
        assert (tmp_path / name).is_file() is traced
    assert (tmp_path / "tests/core/test_logging.py").is_file()


def test_every_variant_and_owned_path_is_in_the_template() -> None:
    """The hook's lists name files that exist: a renamed file would otherwise stay in every
    project, its variants beside it."""
    variants = [
        *variant_files(post.EXAMPLE_RESOURCE_VARIANTS, "with_items", "without_items"),
        *variant_files(post.DATABASE_VARIANTS, *post.DATABASES),
        *variant_files(post.RATE_LIMIT_STORAGE_VARIANTS, "redis", "memory"),
        *variant_files(post.OBSERVABILITY_VARIANTS, "opentelemetry", "none"),
    ]
    owned = [
        *post.EXAMPLE_RESOURCE_DIRS,
        *post.POSTGRESQL_ONLY_PATHS,
        *post.SQLITE_ONLY_PATHS,
        *post.REDIS_FILES,
        *post.OPENTELEMETRY_FILES,
    ]
    missing = [name for name in [*variants, *owned] if not (PROJECT_TEMPLATE_DIR / name).exists()]
    assert missing == []
    targets = [*post.EXAMPLE_RESOURCE_VARIANTS, *post.DATABASE_VARIANTS]
    targets += [*post.RATE_LIMIT_STORAGE_VARIANTS, *post.OBSERVABILITY_VARIANTS]
    stored = [name for name in targets if (PROJECT_TEMPLATE_DIR / name).exists()]
    assert stored == [], "a variant's target must not be stored beside its variants"


def test_use_redis_must_be_yes_or_no() -> None:
    assert pre.find_problem({**VALID_ANSWERS, "use_redis": "yes"}) is None
    problem = pre.find_problem({**VALID_ANSWERS, "use_redis": "redis"})
    assert problem == "use_redis must be yes or no, got 'redis'"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_supported_databases_pass(database: str) -> None:
    assert pre.find_problem({**VALID_ANSWERS, "database": database}) is None


@pytest.mark.parametrize("database", ["mysql", "", None, "PostgreSQL"])
def test_other_databases_are_refused(database: object) -> None:
    problem = pre.find_problem({**VALID_ANSWERS, "database": database})
    assert problem == f"database {database!r} is not supported; choose one of sqlite, postgresql"


@pytest.mark.parametrize("observability", ["none", "opentelemetry"])
def test_supported_observability_passes(observability: str) -> None:
    assert pre.find_problem({**VALID_ANSWERS, "observability": observability}) is None


@pytest.mark.parametrize("observability", ["prometheus", "", None, "OpenTelemetry", True])
def test_other_observability_is_refused(observability: object) -> None:
    problem = pre.find_problem({**VALID_ANSWERS, "observability": observability})
    assert problem == (
        f"observability {observability!r} is not supported; choose one of none, opentelemetry"
    )


def test_write_env_file_writes_a_private_secret_once(tmp_path: Path) -> None:
    assert post.write_env_file(tmp_path) is True
    env_file = tmp_path / ".env"
    first = env_file.read_text(encoding="utf-8")
    assert "ENVIRONMENT=local\n" in first
    (secret,) = [line for line in first.splitlines() if line.startswith("SECRET_KEY=")]
    assert len(secret.removeprefix("SECRET_KEY=")) >= 32
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert post.write_env_file(tmp_path) is False
    assert env_file.read_text(encoding="utf-8") == first


def test_secrets_differ_between_projects(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        post.write_env_file(tmp_path / name)
    one = (tmp_path / "one" / ".env").read_text(encoding="utf-8")
    two = (tmp_path / "two" / ".env").read_text(encoding="utf-8")
    assert one != two


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)],
)
def test_skip_install_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(post.SKIP_INSTALL_VARIABLE, value)
    reason = post.skip_reason(VALID_ANSWERS)
    assert reason == (f"{post.SKIP_INSTALL_VARIABLE} is set" if expected else None)


def test_skip_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(post.SKIP_INSTALL_VARIABLE, raising=False)
    assert post.skip_reason({**VALID_ANSWERS, "run_tests": "no"}) == "run_tests is off"
    assert post.skip_reason({**VALID_ANSWERS, post.CRUFT_COMMIT_KEY: "0" * 40}) == (
        "rendered by cruft"
    )


def fake_python(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(os.name == "nt", reason="uses POSIX shell scripts as fake interpreters")
def test_find_python_skips_broken_shims_and_prefers_the_newest_pyenv_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shim that exists but fails, like a pyenv shim for a version that is not selected.
    shims = tmp_path / "shims"
    fake_python(shims / "python3.98", "echo 'pyenv: python3.98: command not found' >&2; exit 127")
    pyenv_root = tmp_path / "pyenv"
    fake_python(pyenv_root / "versions/3.98.2/bin/python3.98", "echo 3.98")
    newest = fake_python(pyenv_root / "versions/3.98.10/bin/python3.98", "echo 3.98")
    fake_python(pyenv_root / "versions/3.9.1/bin/python3.9", "echo 3.9")
    monkeypatch.setenv("PATH", str(shims))
    monkeypatch.setenv("PYENV_ROOT", str(pyenv_root))
    assert post.find_python("3.98") == str(newest)


@pytest.mark.skipif(os.name == "nt", reason="uses POSIX shell scripts as fake interpreters")
def test_find_python_rejects_an_interpreter_of_another_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path / "bin/python3.97", "echo 3.96")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "no-uv-pythons"))
    assert post.find_python("3.97") is None


def test_find_python_accepts_the_running_interpreter() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert post.find_python(version) == sys.executable


def test_install_command_names_what_make_would_not_find(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    python = "/opt/py 3/bin/python3.12"
    monkeypatch.setattr(post, "find_uv", lambda: "/opt/uv/bin/uv")  # not on PATH
    monkeypatch.delenv(post.INSTALLER_VARIABLE, raising=False)
    assert post.install_command(python) == (
        "uv",
        ["make", "install", f"PYTHON={python}", "UV=/opt/uv/bin/uv"],
    )
    uv = fake_python(tmp_path / "bin" / "uv", "exit 0")
    monkeypatch.setenv("PATH", str(uv.parent))
    monkeypatch.setattr(post, "find_uv", lambda: str(uv))
    assert post.install_command(python) == ("uv", ["make", "install", f"PYTHON={python}"])
    monkeypatch.setenv(post.INSTALLER_VARIABLE, "pip")
    pip = ("pip", ["make", "install", f"PYTHON={python}", "INSTALLER=pip"])
    assert post.install_command(python) == pip
    monkeypatch.setattr(post, "find_uv", lambda: None)
    monkeypatch.delenv(post.INSTALLER_VARIABLE)
    assert post.install_command(python) == pip
    assert shlex.join(pip[1]) == "make install 'PYTHON=/opt/py 3/bin/python3.12' INSTALLER=pip"


def test_forcing_a_missing_uv_is_an_install_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(post, "find_uv", lambda: None)
    monkeypatch.setenv(post.INSTALLER_VARIABLE, "uv")
    with pytest.raises(post.InstallError, match="no uv executable"):
        post.install_command("python3.12")


def test_the_hook_source_writes_no_install_command() -> None:
    """The project's `make install` is the one install; the hook only runs it."""
    source = (HOOKS_DIR / "post_gen_project.py").read_text(encoding="utf-8")
    for command in ("uv sync", "uv lock", "uv venv", "pip install", "-m venv", "ensurepip"):
        assert command not in source, command


def test_the_hook_is_smaller_than_every_module_it_generates() -> None:
    def lines(path: Path) -> int:
        return len(path.read_text(encoding="utf-8").splitlines())

    largest = max((PROJECT_TEMPLATE_DIR / "app").rglob("*.py"), key=lines)
    hook = lines(HOOKS_DIR / "post_gen_project.py")
    assert hook < lines(largest), f"the hook has {hook} lines, {largest.name} {lines(largest)}"


FAKE_MAKE = """\
printf '%s\\n' "$@" > "$MAKE_RECORD"
[ -d .venv ] && echo venv >> "$MAKE_RECORD"
for n in $(seq 1 40); do echo "installer line $n"; done
exit ${MAKE_STATUS:-0}"""


@pytest.fixture
def fake_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `make` on PATH that records its arguments (and whether .venv exists) and prints 40
    lines; MAKE_STATUS is its exit status."""
    record = tmp_path / "make-record"
    fake_python(tmp_path / "fake-bin" / "make", FAKE_MAKE)
    monkeypatch.setenv("PATH", f"{tmp_path / 'fake-bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MAKE_RECORD", str(record))
    monkeypatch.setenv("MAKEFLAGS", "-j9 PYTHON=/outer/python")
    monkeypatch.delenv(post.SKIP_INSTALL_VARIABLE, raising=False)
    monkeypatch.delenv(post.INSTALLER_VARIABLE, raising=False)
    return record


def fake_venv(project: Path, version: str) -> Path:
    (project / ".venv").mkdir(parents=True)
    (project / ".venv" / "pyvenv.cfg").write_text("home = /nowhere\n", encoding="utf-8")
    (project / ".venv" / ".installed").touch()
    return fake_python(project / ".venv/bin/python", f"echo {version}")


@pytest.mark.skipif(os.name == "nt", reason="uses POSIX shell scripts as fake programs")
def test_a_failed_install_prints_the_command_it_ran_and_the_output_tail(
    fake_make: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MAKE_STATUS", "2")
    assert post.main(json.dumps(VALID_ANSWERS)) == 0
    ran = fake_make.read_text(encoding="utf-8").splitlines()
    assert "venv" not in ran
    _installer, command = post.install_command(sys.executable)
    assert ran == command[1:]
    err = capsys.readouterr().err
    assert "exited with status 2" in err
    assert "    | installer line 11\n" in err
    assert "installer line 10\n" not in err
    assert f"    cd {project}\n    {shlex.join(command)}\n    make test\n" in err
    assert (project / ".env").is_file()


@pytest.mark.skipif(os.name == "nt", reason="uses POSIX shell scripts as fake programs")
@pytest.mark.parametrize(
    ("venv_version", "make_calls", "said"),
    [
        ("3.10", ["install"], "Replacing {venv}: it does not run Python 3.12"),  # no .venv left
        ("3.12", ["install", "venv"], "Reusing the existing virtual environment {venv}"),
    ],
)
def test_a_venv_of_another_python_is_replaced_and_one_of_the_right_python_refilled(
    fake_make: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    venv_version: str,
    make_calls: list[str],
    said: str,
) -> None:
    fake_venv(tmp_path, venv_version)
    post.install(tmp_path, ["make", "install"], "3.12", "pip")
    assert fake_make.read_text(encoding="utf-8").splitlines() == make_calls
    assert not (tmp_path / ".venv/.installed").exists(), "the stamp would stop make install"
    out = capsys.readouterr().out
    assert said.format(venv=tmp_path / ".venv") in out
    assert "Installing the project and its dev dependencies with pip" in out


def test_a_venv_folder_that_is_no_venv_is_refused(fake_make: Path, tmp_path: Path) -> None:
    (tmp_path / ".venv" / "mine").mkdir(parents=True)
    with pytest.raises(post.InstallError, match="exists but is not a virtual environment"):
        post.install(tmp_path, ["make", "install"], "3.12", "uv")
    assert (tmp_path / ".venv" / "mine").is_dir()
    assert not fake_make.exists()


def test_no_outer_make_settings_reach_the_project_make(fake_make: Path, tmp_path: Path) -> None:
    env = post.project_env(tmp_path)
    assert "MAKEFLAGS" not in env
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    assert env["VIRTUAL_ENV"] == str(tmp_path / ".venv")
