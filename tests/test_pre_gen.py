"""Rejected answers stop cookiecutter with one clear line and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from bakery import VALID_ANSWERS, Bake, bake, run_rendered_hook


def assert_nothing_left(result: Bake) -> None:
    leftovers = sorted(result.output_dir.rglob("*")) if result.output_dir.exists() else []
    assert leftovers == [], f"the rejected bake left files behind: {leftovers}"


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("answers", "key", "mentions"),
    [
        pytest.param(
            {"project_slug": "My-Service"}, "project_slug", "'My-Service'", id="slug-caps"
        ),
        pytest.param({"project_slug": "1service"}, "project_slug", "'1service'", id="slug-digit"),
        pytest.param(
            {"project_slug": "my service"}, "project_slug", "'my service'", id="slug-space"
        ),
        pytest.param({"project_slug": "class"}, "project_slug", "keyword", id="slug-keyword"),
        pytest.param({"project_slug": ""}, "project_slug", "empty", id="slug-empty"),
        pytest.param({"project_slug": "app"}, "project_slug", "'app'", id="slug-shadows-app"),
        pytest.param(
            {"author_email": "not-an-email"}, "author_email", "'not-an-email'", id="email-no-at"
        ),
        pytest.param({"author_email": "a@b"}, "author_email", "'a@b'", id="email-no-dot"),
        pytest.param({"author_email": "a b@c.d"}, "author_email", "'a b@c.d'", id="email-space"),
        pytest.param(
            {"project_name": "My\nService", "project_slug": "my_service"},
            "project_name",
            "single line",
            id="name-newline",
        ),
        pytest.param(
            {"project_name": "", "project_slug": "my_service"},
            "project_name",
            "empty",
            id="name-empty",
        ),
        pytest.param(
            {"description": "first line\nsecond line"},
            "description",
            "single line",
            id="desc-newline",
        ),
    ],
)
def test_rejected_answer(tmp_path: Path, answers: dict[str, str], key: str, mentions: str) -> None:
    result = bake(tmp_path, {**answers, "run_tests": "no"})
    assert result.returncode != 0, result.describe()
    errors = error_lines(result.output)
    assert len(errors) == 1, result.describe()
    assert errors[0].startswith(f"error: {key} "), errors[0]
    assert mentions in errors[0]
    assert_nothing_left(result)


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Acme (EU) Billing", "acme_eu_billing"), ("Café Zürich-API", "cafe_zurich_api")],
)
def test_the_default_slug_is_the_name_slugified(tmp_path: Path, name: str, slug: str) -> None:
    result = bake(tmp_path, {"project_name": name, "run_tests": "no"}, slug=slug)
    assert result.returncode == 0, result.describe()
    assert name in (result.project_dir / "README.md").read_text(encoding="utf-8")
    assert (result.project_dir / "app" / "main.py").is_file()


def test_unknown_python_version_is_refused_before_generation(tmp_path: Path) -> None:
    # cookiecutter itself refuses a value outside a choice list, before any hook runs.
    result = bake(tmp_path, {"python_version": "3.10", "run_tests": "no"})
    assert result.returncode != 0
    assert "3.10 provided for choice variable python_version" in result.output, result.describe()
    assert_nothing_left(result)


def test_pre_gen_hook_refuses_unknown_python_version(tmp_path: Path) -> None:
    # Answers replayed from a file skip cookiecutter's choice check; the hook still refuses.
    context = {"cookiecutter": {**VALID_ANSWERS, "python_version": "3.10"}}
    result = run_rendered_hook("pre_gen_project", context, cwd=tmp_path, script_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "error: python_version '3.10' is not supported; choose one of 3.11, 3.12, 3.13"
    ]


def test_valid_answers_pass_the_pre_gen_hook(tmp_path: Path) -> None:
    context = {"cookiecutter": dict(VALID_ANSWERS)}
    result = run_rendered_hook("pre_gen_project", context, cwd=tmp_path, script_dir=tmp_path)
    assert result.returncode == 0
    assert result.stdout == ""


def test_rejection_with_keep_project_on_failure_writes_no_file(tmp_path: Path) -> None:
    # cookiecutter keeps the directory it made for the hook, but no file reaches it.
    result = bake(
        tmp_path, {"author_email": "a@b", "run_tests": "no"}, keep_project_on_failure=True
    )
    assert result.returncode != 0
    assert len(error_lines(result.output)) == 1, result.describe()
    files = [path for path in result.output_dir.rglob("*") if not path.is_dir()]
    assert files == []
