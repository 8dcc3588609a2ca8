"""A generated suite that fails makes the bake fail, and says how to go on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bakery import LOCAL_PYTHON, bake, pytest_summary

# A pytest plugin that turns the first collected test into a strict xfail, so a
# passing test is reported as failed. It makes the generated suite fail for
# real (a coverage floor of 101% would only be a command-line usage error:
# pytest-cov refuses values above 100). It keeps the first few tests only: what
# is tested here is the hook's answer to a failing suite, which the whole suite
# (run by every bake of test_bakes.py) would only make slower to reach.
FAILING_PLUGIN = """
import pytest

KEPT = 12


def pytest_collection_modifyitems(config, items):
    if items:
        config.hook.pytest_deselected(items=items[KEPT:])
        del items[KEPT:]
        items[0].add_marker(pytest.mark.xfail(strict=True, reason="forced failure"))
"""


@pytest.mark.bake
def test_failing_generated_tests_fail_the_bake_but_keep_the_project(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "force_one_failure.py").write_text(FAILING_PLUGIN, encoding="utf-8")
    result = bake(
        tmp_path / "bake",
        {"python_version": LOCAL_PYTHON},
        env={"PYTHONPATH": str(plugin_dir), "PYTEST_ADDOPTS": "-p force_one_failure"},
        keep_project_on_failure=True,
    )
    assert result.returncode != 0, result.describe()
    output = result.output
    summary = pytest_summary(output)
    assert summary is not None, result.describe()
    # The forced failure is among the failures; on a loaded machine it may not be alone, and
    # test_bakes.py is where any other failure of the generated suite is reported.
    assert re.search(r"\b\d+ failed\b", summary), summary
    assert "[XPASS(strict)] forced failure" in output, result.describe()
    assert "error: the generated project's tests failed" in output, result.describe()
    assert f"The project is at {result.project_dir}" in output
    assert "--keep-project-on-failure" in output
    assert f"cd {result.project_dir} && make test" in output
    assert "Success:" not in output
    assert (result.project_dir / "pyproject.toml").is_file()
    assert (result.project_dir / ".venv").is_dir()
