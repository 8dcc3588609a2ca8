"""Validate the answers before cookiecutter writes any project file.

Cookiecutter renders this script with Jinja and runs it with the new, still
empty, project directory as the working directory. A rejected answer prints a
single ``error: ...`` line on stderr and exits with status 1; cookiecutter then
stops and removes the directory it created (with --keep-project-on-failure it
leaves that directory, still empty, in place).
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

# The answers enter this script as data, never as code. Cookiecutter renders
# the one Jinja expression below into a JSON document: ``tojson`` writes ASCII
# only and escapes every quote and backslash inside a value (``\"``, ``\\``).
# That document lands inside a raw triple-quoted string, which keeps each
# backslash as written, so ``json.loads`` reads exactly the JSON text. The
# string cannot end early: an escaped quote never closes a raw string, and a
# JSON document never holds three unescaped quotes in a row and always ends
# with ``}``. Unrendered, the line is still an ordinary string literal, so
# ruff and mypy check this file exactly as it is stored in the template.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

SUPPORTED_PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
SUPPORTED_DATABASES = ("sqlite", "postgresql")
SUPPORTED_OBSERVABILITY = ("none", "opentelemetry")
SUPPORTED_JOBS_ENGINES = ("embedded", "dramatiq")
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
SLUG_MAX_LENGTH = 64
# Names the generated project already uses for its own packages and folders,
# the libraries it depends on (distribution and import names) and pip: a project
# named like one of them would shadow it or clash with it when installed. A unit
# test checks that every dependency of every option is listed.
RESERVED_SLUGS = frozenset(
    {
        "aiosmtpd",
        "aiosmtplib",
        "aiosqlite",
        "alembic",
        "anyio",
        "app",
        "argon2",
        "asyncpg",
        "bcrypt",
        "bench",
        "coredis",
        "coverage",
        "cryptography",
        "deploy",
        "dramatiq",
        "email_validator",
        "fastapi",
        "fastapi_swagger",
        "greenlet",
        "hatchling",
        "httpx",
        "jwt",
        "limits",
        "migrations",
        "multipart",
        "opentelemetry",
        "opentelemetry_exporter_otlp_proto_http",
        "opentelemetry_instrumentation_httpx",
        "opentelemetry_instrumentation_sqlalchemy",
        "opentelemetry_sdk",
        "pika",
        "mypy",
        "pip",
        "pre_commit",
        "prometheus_client",
        "pwdlib",
        "pydantic",
        "pydantic_settings",
        "pyjwt",
        "pytest",
        "pytest_asyncio",
        "pytest_cov",
        "pytest_timeout",
        "pytest_xdist",
        "python_json_logger",
        "python_multipart",
        "pythonjsonlogger",
        "redis",
        "ruff",
        "scaffold",
        "sqlalchemy",
        "starlette",
        "test",
        "tests",
        "trustme",
        "uvicorn",
    }
)
# A plausible address, not a full RFC 5322 parser: one "@", no whitespace or
# quoting characters, and a domain made of at least two dot-separated labels.
EMAIL_PATTERN = re.compile(r"^[\w.%+-]+@[\w-]+(?:\.[\w-]+)+$")
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})


def load_answers(raw: str) -> dict[str, Any]:
    """Parse the JSON document cookiecutter rendered into this script."""
    answers = json.loads(raw)
    if not isinstance(answers, dict):
        msg = "the cookiecutter context is not a JSON object"
        raise TypeError(msg)
    return answers


def is_single_line(text: str) -> bool:
    """True when ``text`` holds no line break and no other control character."""
    return not any(unicodedata.category(char) in {"Cc", "Zl", "Zp"} for char in text)


def check_project_name(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "project_name must not be empty"
    if not is_single_line(value):
        return f"project_name must be a single line without control characters, got {value!r}"
    return None


def check_single_line(key: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if not isinstance(value, str):
            return f"{key} must be text, got {value!r}"
        if not is_single_line(value):
            return f"{key} must be a single line without control characters, got {value!r}"
        return None

    return check


def suggest_slug(value: str) -> str:
    """Best-effort valid slug derived from ``value``; may be empty."""
    slug = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")
    return slug.lstrip("0123456789_")[:SLUG_MAX_LENGTH]


def check_project_slug(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "project_slug must not be empty"
    if not SLUG_PATTERN.fullmatch(value) or len(value) > SLUG_MAX_LENGTH:
        hint = suggest_slug(value)
        example = hint if SLUG_PATTERN.fullmatch(hint) else "my_service"
        return (
            f"project_slug {value!r} is not valid: use at most {SLUG_MAX_LENGTH} lowercase "
            f"letters, digits and underscores, starting with a letter (for example {example!r})"
        )
    if keyword.iskeyword(value):
        return f"project_slug {value!r} is a Python keyword; choose another name"
    if value in RESERVED_SLUGS or value in sys.stdlib_module_names:
        return (
            f"project_slug {value!r} would shadow or clash with an existing Python module "
            f"or a package the project uses; choose another name (for example '{value}_service')"
        )
    return None


def check_author_email(value: object) -> str | None:
    if not isinstance(value, str) or not EMAIL_PATTERN.fullmatch(value):
        return f"author_email {value!r} is not a plausible email address (like name@example.com)"
    return None


def check_python_version(value: object) -> str | None:
    if value not in SUPPORTED_PYTHON_VERSIONS:
        choices = ", ".join(SUPPORTED_PYTHON_VERSIONS)
        return f"python_version {value!r} is not supported; choose one of {choices}"
    return None


def check_choice(key: str, supported: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value not in supported:
            return f"{key} {value!r} is not supported; choose one of {', '.join(supported)}"
        return None

    return check


def check_boolean(key: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return None
        return f"{key} must be yes or no, got {value!r}"

    return check


CHECKS: Mapping[str, Callable[[object], str | None]] = {
    "project_name": check_project_name,
    "project_slug": check_project_slug,
    "description": check_single_line("description"),
    "author_name": check_single_line("author_name"),
    "author_email": check_author_email,
    "python_version": check_python_version,
    "include_example_resource": check_boolean("include_example_resource"),
    "database": check_choice("database", SUPPORTED_DATABASES),
    "use_redis": check_boolean("use_redis"),
    "observability": check_choice("observability", SUPPORTED_OBSERVABILITY),
    "jobs_engine": check_choice("jobs_engine", SUPPORTED_JOBS_ENGINES),
    "run_tests": check_boolean("run_tests"),
}


def find_problem(answers: Mapping[str, Any]) -> str | None:
    """The first problem with the answers, or None when all of them are valid."""
    for key, check in CHECKS.items():
        problem = check(answers.get(key))
        if problem is not None:
            return problem
    return None


def main(raw_answers: str) -> int:
    problem = find_problem(load_answers(raw_answers))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON))
