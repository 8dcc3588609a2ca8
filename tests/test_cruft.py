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
from bakery import LOCAL_PYTHON, TEMPLATE_DIR, clean_env, run_in_project, venv_bin
from test_scaffold import RESOURCES

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


def create_project(
    repo: Path, out: Path, commit: str, context: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`cruft create` of the template in `repo` at `commit`, with these answers, into `out`."""
    created = cruft(
        out,
        "create",
        str(repo),
        "--checkout",
        commit,
        "--no-input",
        "--extra-context",
        json.dumps(context),
    )
    assert created.returncode == 0, created.stdout + created.stderr
    return created


def template_commit(repo: Path) -> str:
    """The template as it is, committed to a new repository at `repo`: its commit."""
    ignore = shutil.ignore_patterns("__pycache__", ".ruff_cache", ".mypy_cache")
    for name in TEMPLATE_FILES:
        source = TEMPLATE_DIR / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    return commit_all(repo, "the template as it is")


@pytest.fixture
def template_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """The template in a repository of its own: its commit now, and a later one."""
    repo = tmp_path / "template"
    repo.mkdir()
    earlier = template_commit(repo)

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
    created = create_project(repo, out, earlier, {"project_name": "Kept Current"})
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


RELEASE_MIGRATION = '''"""a later release's data migration

Revision ID: 9d8c7b6a5f40
Revises: {head}
"""

from alembic import op

revision: str = "9d8c7b6a5f40"
down_revision: str | None = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE users SET full_name = full_name WHERE 1 = 0")


def downgrade() -> None:
    pass
'''


def alembic_heads(project: Path) -> list[str]:
    done = run_in_project(project, [venv_bin(project, "alembic"), "heads"])
    assert done.returncode == 0, done.stdout
    return [line.split()[0] for line in done.stdout.splitlines() if "(head)" in line]


@pytest.mark.bake
def test_make_update_joins_a_release_migration_to_the_projects_own_and_stays_green(
    tmp_path: Path,
) -> None:
    """The whole life of a project: created with cruft, installed, given two scaffolded
    resources (tests/test_scaffold.py's, with their migrations), a setting and README notes
    of its own, then updated with `make update` to a release that adds a migration too.
    Nothing conflicts, no `.rej`, one Alembic head (the update joined the two), and `make
    check` (ruff, format, mypy --strict, the suite) passes."""
    repo = tmp_path / "template"
    repo.mkdir()
    earlier = template_commit(repo)
    versions = repo / "{{cookiecutter.project_slug}}" / "migrations" / "versions"
    (head,) = heads(versions)
    (versions / "20270301_0900_9d8c7b6a5f40_release_data_migration.py").write_text(
        RELEASE_MIGRATION.format(head=head), encoding="utf-8"
    )
    later = commit_all(repo, "a later release, with a migration")

    out = tmp_path / "out"
    out.mkdir()
    context = {"project_name": "Lives Long", "python_version": LOCAL_PYTHON}
    create_project(repo, out, earlier, context)
    project = out / "lives_long"
    make = ["make", f"CRUFT={sys.executable} -m cruft"]
    installed = run_in_project(project, [*make, "install"])
    assert installed.returncode == 0, installed.stdout
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "generated")

    # The project's own: a scaffolded resource (its migration on top of the template's), a
    # setting in .env, notes in the README.
    for name, fields in RESOURCES.items():
        scaffolded = run_in_project(
            project, [*make, "resource", f"name={name}", f"fields={fields}"]
        )
        assert scaffolded.returncode == 0, scaffolded.stdout
    env_file = project / ".env"
    env_file.write_text(env_file.read_text(encoding="utf-8") + "LOG_LEVEL=DEBUG\n", "utf-8")
    readme = project / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nOur team's notes.\n", "utf-8")
    (own_head,) = alembic_heads(project)
    assert own_head != head
    commit_all(project, "orders, and our notes")

    updated = run_in_project(project, [*make, "update", f"checkout={later}"], timeout=600)
    assert updated.returncode == 0, updated.stdout

    assert sorted(path.name for path in project.rglob("*.rej")) == []
    tracked = git(project, "ls-files").splitlines()
    assert not [
        name
        for name in tracked
        if "<<<<<<<" in (project / name).read_text(encoding="utf-8", errors="replace")
    ]
    (joined,) = alembic_heads(project)
    assert joined not in {own_head, "9d8c7b6a5f40"}
    assert "9d8c7b6a5f40" in git(project, "status", "--porcelain")
    assert "Our team's notes." in readme.read_text(encoding="utf-8")
    assert (project / "app" / "orders").is_dir()
    checked = run_in_project(project, [*make, "check"], timeout=900)
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["commit"] == later
