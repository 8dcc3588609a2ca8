"""A generated project kept up to date with cruft: `cruft create` records the answers and the
template's commit, and `cruft update` brings a later commit's changes into a project its user
has changed, without a conflict and without touching its secrets, its lock or its venv.

The template is copied into a git repository of its own with two commits: the template as it
is, and a later one that changes what releases change (a README section, a setting's example,
a new module).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bakery import TEMPLATE_DIR, clean_env

TEMPLATE_FILES = ("cookiecutter.json", "hooks", "LICENSE", "{{cookiecutter.project_slug}}")
GIT_USER = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
TIMEOUT = 300


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def git(cwd: Path, *args: str) -> str:
    done = run(["git", *GIT_USER, *args], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def cruft(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "cruft", *args], cwd)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def heads(versions: Path) -> set[str]:
    """The Alembic heads: revisions no other revision names as its down_revision."""
    revisions: dict[str, str | None] = {}
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision: str = "(\w+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision: str \| None = (?:"(\w+)"|None)', text, re.MULTILINE)
        assert revision is not None, path
        assert down is not None, path
        revisions[revision[1]] = down[1]
    return set(revisions) - {down for down in revisions.values() if down}


@pytest.fixture
def template_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """The template in a repository of its own: its commit now, and a later one."""
    repo = tmp_path / "template"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".ruff_cache", ".mypy_cache")
    for name in TEMPLATE_FILES:
        source = TEMPLATE_DIR / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    earlier = commit_all(repo, "the template as it is")

    project = repo / "{{cookiecutter.project_slug}}"
    readme = project / "README.md"
    readme.write_text(
        readme.read_text(encoding="utf-8") + "\n## Upgrading\n\nSee CHANGELOG.md.\n",
        encoding="utf-8",
    )
    example = project / ".env.example"
    text = example.read_text(encoding="utf-8")
    assert "\nLOG_LEVEL=INFO\n" in text
    example.write_text(text.replace("\nLOG_LEVEL=INFO\n", "\nLOG_LEVEL=WARNING\n"), "utf-8")
    (project / "app" / "core" / "released_later.py").write_text(
        '"""A module a later release adds."""\n', encoding="utf-8"
    )
    later = commit_all(repo, "a later release")
    return repo, earlier, later


def test_an_update_brings_a_release_into_a_changed_project_without_conflict(
    template_repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    repo, earlier, later = template_repo
    out = tmp_path / "out"
    out.mkdir()
    created = cruft(
        out,
        "create",
        str(repo),
        "--checkout",
        earlier,
        "--no-input",
        "--extra-context",
        json.dumps({"project_name": "Kept Current"}),
    )
    assert created.returncode == 0, created.stdout + created.stderr
    project = out / "kept_current"
    # The hook knew cruft rendered it: no venv, no lock, no test run (and it says so).
    assert "rendered by cruft" in created.stdout + created.stderr
    assert not (project / ".venv").exists()
    assert not (project / "uv.lock").exists()
    recorded = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert recorded["commit"] == earlier
    assert recorded["context"]["cookiecutter"]["project_name"] == "Kept Current"

    # The project's life: committed, its README edited, a setting of its own in .env, a
    # migration of its own and a module of its own.
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "generated")
    env_file = project / ".env"
    env_file.write_text(env_file.read_text(encoding="utf-8") + "LOG_LEVEL=DEBUG\n", "utf-8")
    secrets_before = env_file.read_bytes()
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    readme.write_text("".join([lines[0], "\nOur team's notes.\n", *lines[1:]]), "utf-8")
    versions = project / "migrations" / "versions"
    (head,) = heads(versions)
    (versions / "20270101_0900_a1b2c3d4e5f6_orders.py").write_text(
        f'"""orders"""\n\nrevision: str = "a1b2c3d4e5f6"\ndown_revision: str | None = "{head}"\n'
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n",
        encoding="utf-8",
    )
    (project / "app" / "orders").mkdir()
    (project / "app" / "orders" / "__init__.py").write_text("", encoding="utf-8")
    commit_all(project, "our changes")

    updated = cruft(project, "update", "--skip-apply-ask", "--checkout", later)
    assert updated.returncode == 0, updated.stdout + updated.stderr

    assert sorted(path.name for path in project.rglob("*.rej")) == []
    assert sorted(path.name for path in project.rglob("*.orig")) == []
    changed = git(project, "status", "--porcelain")
    assert "<<<<<<<" not in "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in (project / "README.md", project / ".env.example")
    )
    # The release arrived...
    assert "## Upgrading" in readme.read_text(encoding="utf-8")
    assert "\nLOG_LEVEL=WARNING\n" in (project / ".env.example").read_text(encoding="utf-8")
    assert (project / "app" / "core" / "released_later.py").is_file()
    # ...and everything of the project's own stayed as it was.
    assert "Our team's notes." in readme.read_text(encoding="utf-8")
    assert env_file.read_bytes() == secrets_before
    assert (project / "app" / "orders" / "__init__.py").is_file()
    assert heads(versions) == {"a1b2c3d4e5f6"}
    assert not (project / "uv.lock").exists()
    assert not (project / ".venv").exists()
    assert json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["commit"] == later
    assert " .cruft.json" in changed
    checked = cruft(project, "check", "--checkout", later)
    assert checked.returncode == 0, checked.stdout + checked.stderr
