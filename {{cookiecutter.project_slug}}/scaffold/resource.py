"""Write a resource like app/items: its domain folder, its tests, its migration, and its lines in
app/api.py and app/db/models.py.

Everything is checked and rendered before the first file is written, so input the command
refuses (one line on stderr, exit status 1) leaves the project as it was.
"""

import argparse
import ast
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template

from alembic.config import Config
from alembic.script import ScriptDirectory

from scaffold.errors import ScaffoldError
from scaffold.fields import Field, camel, check_identifier, parse_fields

TEMPLATES = Path(__file__).resolve().parent / "templates"
API = Path("app/api.py")
MODELS = Path("app/db/models.py")
VERSIONS = Path("migrations/versions")
USAGE = 'make resource name=orders fields="title:str(200) amount:decimal paid:bool due:date"'
# Local names the generated modules and tests already use: a resource whose singular (or
# plural) is one of them would shadow it.
TAKEN_NAMES = frozenset(
    {
        "admin",
        "after",
        "again",
        "app",
        "before",
        "body",
        "caller",
        "caught",
        "claims",
        "client",
        "command",
        "counted",
        "created",
        "current",
        "data",
        "entry",
        "etag",
        "exc",
        "factory",
        "field",
        "first",
        "foreign",
        "func",
        "headers",
        "listed",
        "method",
        "missing",
        "name",
        "op",
        "owner",
        "page",
        "params",
        "patched",
        "path",
        "payload",
        "pytest",
        "read",
        "request",
        "response",
        "rest",
        "result",
        "router",
        "row",
        "sa",
        "select",
        "service",
        "session",
        "stale",
        "statement",
        "status",
        "stranger",
        "tests",
        "theirs",
        "total",
        "url",
        "user",
        "uuid",
        "value",
        "values",
        "viewer",
        "visible",
    }
)


def singular_of(plural: str) -> str:
    """orders -> order, categories -> category, addresses -> address."""
    if plural.endswith("ies") and len(plural) > 3:
        return plural[:-3] + "y"
    if plural.endswith(("sses", "shes", "ches", "xes", "zes")):
        return plural[:-2]
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    raise ScaffoldError(
        f"resource name {plural!r} is not a plural (orders, categories, addresses); "
        "give the singular too if it is: singular=..."
    )


@dataclass(frozen=True)
class Resource:
    plural: str
    singular: str
    fields: list[Field]

    @property
    def model(self) -> str:
        return camel(self.singular)

    @property
    def path(self) -> str:
        """The URL segment: /api/v1/line-items for line_items."""
        return self.plural.replace("_", "-")

    def substitutions(self) -> dict[str, str]:
        label, label_plural = self.singular.replace("_", " "), self.plural.replace("_", " ")
        return {
            "plural": self.plural,
            "singular": self.singular,
            "SINGULAR": self.singular.upper(),
            "URL": self.plural.upper(),
            "Model": self.model,
            "path": self.path,
            "label": label,
            "label_plural": label_plural,
            "Label": label.capitalize(),
            "Label_plural": label_plural.capitalize(),
            "first": self.fields[0].name,
        }


def check_name(project: Path, plural: str, singular: str | None) -> Resource:
    check_identifier(plural, "resource name")
    for place in ("app", "tests"):
        for taken in (project / place / plural, project / place / f"{plural}.py"):
            if taken.exists():
                raise ScaffoldError(f"{taken.relative_to(project)} already exists")
    for module in sorted((project / "app").rglob("*.py")):
        if f'__tablename__ = "{plural}"' in module.read_text(encoding="utf-8"):
            raise ScaffoldError(f"table {plural!r} already exists ({module.relative_to(project)})")
    if f"app.{plural}." in (project / API).read_text(encoding="utf-8"):
        raise ScaffoldError(f"{plural!r} is already wired into {API}")
    singular = singular or singular_of(plural)
    check_identifier(singular, "singular")
    if singular == plural:
        raise ScaffoldError(f"the singular of {plural!r} must differ from it")
    for name in (plural, singular):
        if name in TAKEN_NAMES:
            raise ScaffoldError(f"{name!r} is a name the generated code already uses; pick another")
    return Resource(plural, singular, [])


def _block(lines: list[str], indent: str = "") -> str:
    return "\n".join(indent + line for line in lines)


def _imports(module: str, names: set[str]) -> str:
    return f"from {module} import {', '.join(sorted(names))}" if names else ""


def model_substitutions(fields: list[Field]) -> dict[str, str]:
    sqlalchemy = {"ForeignKey", "Index"}
    base = {"Base", "Timestamps", "UUIDPrimaryKey"}
    for field in fields:
        # The column's class: from sqlalchemy, or UTCDateTime from app/db/base.py.
        column = field.column_type.split("(")[0]
        (base if column == "UTCDateTime" else sqlalchemy).add(column)
    kinds = {field.kind for field in fields}
    dates: set[str] = {kind for kind in ("date", "datetime") if kind in kinds}
    python = [_imports("datetime", dates)] if dates else []
    if "decimal" in kinds:
        python.append("from decimal import Decimal")
    return {
        "python_imports": _block(python),
        "sqlalchemy_imports": ", ".join(sorted(sqlalchemy)),
        "base_imports": ", ".join(sorted(base)),
        "constants": _block([line for field in fields for line in field.constants()]),
        "columns": _block([field.column() for field in fields], "    "),
    }


def schema_substitutions(fields: list[Field]) -> dict[str, str]:
    kinds = {field.kind for field in fields}
    core = {"ReadSchema", "Schema"}
    pydantic: set[str] = set()
    python = ["from datetime import datetime"]
    if any(not field.optional for field in fields):
        core.add("NotNull")
    if "str" in kinds:
        core.add("SingleLine")
        pydantic.add("StringConstraints")
    if "text" in kinds:
        core.add("MultiLine")
        pydantic.add("StringConstraints")
    if "int" in kinds:
        pydantic.add("Field")
    if "decimal" in kinds:
        core |= {"TextLimit", "to_places"}
        pydantic.add("Field")
        python.append("from decimal import Decimal")
    if "date" in kinds:
        core.add("TextLimit")
        python[0] = "from datetime import date, datetime"
    if "datetime" in kinds:
        core |= {"TextLimit", "in_utc"}
        pydantic |= {"AfterValidator", "AwareDatetime"}
    model_names = {name for field in fields for name in _constant_names(field)}
    aliases = [field.alias_definition() for field in fields]
    if "int" in kinds:
        aliases.insert(0, "# PostgreSQL's INTEGER, so every value fits on either database.")
        aliases.insert(1, "INT_MIN, INT_MAX = -(2**31), 2**31 - 1")
    return {
        "python_imports": _block(python),
        "pydantic_import": _imports("pydantic", pydantic),
        "core_imports": ", ".join(sorted(core)),
        "model_imports": ", ".join(sorted(model_names)),
        "aliases": _block(aliases),
        "create_fields": _block([field.create_field() for field in fields], "    "),
        "update_fields": _block([field.update_field() for field in fields], "    "),
        "read_fields": _block([field.read_field() for field in fields], "    "),
    }


def _constant_names(field: Field) -> list[str]:
    return [line.split(" = ")[0] for line in field.constants()]


def suite_substitutions(resource: Resource) -> dict[str, str]:
    fields = resource.fields
    creates: list[tuple[str, str]] = []
    updates: list[tuple[str, str]] = []
    for field in fields:
        if not field.optional:
            creates.append(
                (
                    f"{field.name}-missing",
                    "{"
                    + f'name: value for name, value in VALID.items() if name != "{field.name}"'
                    + "}",
                )
            )
        for test_id, value in field.invalid_values():
            creates.append((test_id, "{" + f'**VALID, "{field.name}": {value}' + "}"))
            updates.append((test_id, "{" + f'"{field.name}": {value}' + "}"))
    nullable = [field.name for field in fields if field.optional]
    return {
        "valid": repr({field.name: field.sample() for field in fields}),
        "changed": repr({field.name: field.other_sample() for field in fields}),
        "invalid_creates": _block([f"{payload}," for _, payload in creates], "        "),
        "invalid_create_ids": "".join(f'"{test_id}", ' for test_id, _ in creates),
        "invalid_updates": _block([f"{payload}," for _, payload in updates], "        "),
        "invalid_update_ids": "".join(f'"{test_id}", ' for test_id, _ in updates),
        "clear_test": _clear_test(resource, nullable) if nullable else "",
    }


def _clear_test(resource: Resource, nullable: list[str]) -> str:
    test = render("clear_test.py.tmpl", {**resource.substitutions(), "nullable": repr(nullable)})
    return "\n\n" + test.rstrip("\n")


def render(template: str, substitutions: dict[str, str]) -> str:
    text = Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(substitutions)
    # A substitution that is empty leaves a blank line behind; keep at most two in a row.
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text.lstrip("\n")


def current_head(project: Path) -> str:
    script = ScriptDirectory.from_config(Config(str(project / "alembic.ini")))
    heads = script.get_heads()
    if len(heads) != 1:
        raise ScaffoldError(f"the migrations have {len(heads)} heads; merge them first")
    return heads[0]


def resource_files(project: Path, resource: Resource) -> dict[Path, str]:
    names = resource.substitutions()
    plural = resource.plural
    app, tests = Path("app") / plural, Path("tests") / plural
    files = {app / "__init__.py": "", tests / "__init__.py": ""}
    for name, extra in [
        ("models", model_substitutions(resource.fields)),
        ("schemas", schema_substitutions(resource.fields)),
        ("exceptions", {}),
        ("service", {}),
        ("dependencies", {}),
        ("router", {}),
    ]:
        files[app / f"{name}.py"] = render(f"{name}.py.tmpl", {**names, **extra})
    checks = suite_substitutions(resource)
    for name in ("factories", "test_router", "test_service"):
        files[tests / f"{name}.py"] = render(f"{name}.py.tmpl", {**names, **checks})
    now = datetime.now(UTC)
    revision = uuid.uuid4().hex[-12:]
    migration = VERSIONS / f"{now:%Y%m%d_%H%M}_{revision}_create_{plural}.py"
    files[migration] = render(
        "migration.py.tmpl",
        {
            **names,
            "revision": revision,
            "down_revision": current_head(project),
            "create_date": f"{now:%Y-%m-%d %H:%M:%S}",
            "columns": _block([field.migration_column() for field in resource.fields], "        "),
        },
    )
    return files


def _insert(text: str, after_line: int, lines: list[str]) -> str:
    """`text` with `lines` inserted after its line number `after_line` (1-based)."""
    existing = text.splitlines()
    return "\n".join([*existing[:after_line], *lines, *existing[after_line:]]) + "\n"


def _last_import(tree: ast.Module, where: Path) -> int:
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    if not imports:
        raise ScaffoldError(f"{where} has no imports to add the resource's next to")
    return imports[-1].end_lineno or imports[-1].lineno


def wired_api(text: str, resource: Resource) -> str:
    """app/api.py with the resource's two routers included, as items' are."""
    tree = ast.parse(text)
    include = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "include_api"
        ),
        None,
    )
    if include is None or "PROTECTED" not in text or "include_checked_by_route" not in text:
        raise ScaffoldError(f"{API} has no include_api() with PROTECTED to include the routers")
    plural, singular, path = resource.plural, resource.singular, resource.path
    prefix = 'f"{API_PREFIX}/' + path + '"'
    included = [
        f'    app.include_router({plural}_router, prefix={prefix}, tags=["{plural}"], **PROTECTED)',
        f'    include_checked_by_route(app, {singular}_router, prefix={prefix}, tag="{plural}")',
    ]
    text = _insert(text, include.end_lineno or include.lineno, included)
    imports = [
        f"from app.{plural}.router import {singular}_router",
        f"from app.{plural}.router import router as {plural}_router",
    ]
    return _insert(text, _last_import(tree, API), imports)


def wired_models(text: str, resource: Resource) -> str:
    """app/db/models.py importing the model (so Alembic sees its table) and listing it."""
    tree = ast.parse(text)
    exported = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(
                isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
            )
        ),
        None,
    )
    if exported is None or not isinstance(exported.value, ast.List | ast.Tuple):
        raise ScaffoldError(f"{MODELS} has no __all__ list to add {resource.model} to")
    names = [ast.literal_eval(element) for element in exported.value.elts]
    if resource.model in names:
        raise ScaffoldError(f"a model named {resource.model} already exists ({MODELS})")
    lines = text.splitlines()
    listed = ["__all__ = [", *[f'    "{name}",' for name in sorted([*names, resource.model])], "]"]
    start, end = exported.lineno - 1, exported.end_lineno or exported.lineno
    text = "\n".join([*lines[:start], *listed, *lines[end:]]) + "\n"
    model_import = [f"from app.{resource.plural}.models import {resource.model}"]
    return _insert(text, _last_import(tree, MODELS), model_import)


def tidy(project: Path, paths: list[Path]) -> None:
    """Sort the imports and format, as `make format` would."""
    targets = [str(path) for path in paths if path.suffix == ".py"]
    for command in (
        ["check", "--fix", "--quiet", "--select", "I", *targets],
        ["format", "--quiet", *targets],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ScaffoldError(f"ruff {command[0]} failed: {done.stdout or done.stderr}".strip())


def scaffold(
    project: Path, plural: str, specs: list[str], singular: str | None = None
) -> list[Path]:
    """Check everything, render everything, then write it all; returns what was written."""
    resource = check_name(project, plural, singular)
    resource = Resource(resource.plural, resource.singular, parse_fields(specs))
    files = resource_files(project, resource)
    files[API] = wired_api((project / API).read_text(encoding="utf-8"), resource)
    files[MODELS] = wired_models((project / MODELS).read_text(encoding="utf-8"), resource)
    for relative, text in files.items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    tidy(project, list(files))
    return sorted(files)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="make resource",
        description=f"Scaffold a resource: {USAGE}",
    )
    parser.add_argument("name", help="the resource's plural snake_case name, e.g. orders")
    parser.add_argument("fields", nargs="*", help='e.g. "title:str(200) paid:bool due:date?"')
    parser.add_argument("--singular", help="the singular, when it is not the name minus its s")
    args = parser.parse_args(argv)
    specs = [spec for group in args.fields for spec in group.split()]
    if not args.name:
        sys.stderr.write(f"make resource: no name given: {USAGE}\n")
        return 1
    try:
        written = scaffold(Path.cwd(), args.name, specs, args.singular)
    except ScaffoldError as error:
        sys.stderr.write(f"make resource: {error}\n")
        return 1
    sys.stdout.write("".join(f"wrote {path}\n" for path in written))
    sys.stdout.write("next: make check (the tests, ruff and mypy), then make migrate\n")
    return 0
