"""`.env` belongs to the working directory, where the service is started, never to wherever the
`app` package happens to be installed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from app.core.config import Settings
from tests import PROJECT_DIR

# What a server process does first: read its settings.
SCRIPT = """
import json
import app
from app.core.config import get_settings

settings = get_settings()
print(json.dumps({"package": app.__file__, "log_level": settings.LOG_LEVEL}))
"""


def _files(folder: Path) -> set[str]:
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_an_installed_package_uses_the_working_directory(tmp_path: Path) -> None:
    """As a non-editable install lays it out: the package alone in a folder of its own, with a
    `.env` beside it that must not count, run from a working directory with its own `.env`."""
    site, work = tmp_path / "site-packages", tmp_path / "work"
    shutil.copytree(PROJECT_DIR / "app", site / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (site / ".env").write_text("LOG_LEVEL=ERROR\n", encoding="utf-8")
    work.mkdir()
    (work / ".env").write_text("LOG_LEVEL=WARNING\n", encoding="utf-8")
    installed = _files(site)
    # None of the test run's settings: only the working directory's .env may speak.
    env = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(site)
    assert seen["log_level"] == "WARNING"
    assert _files(site) == installed  # nothing written beside the package
    assert _files(work) == {".env"}
