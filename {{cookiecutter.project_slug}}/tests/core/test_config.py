import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.config import (
    DEFAULT_SECRET_KEY,
    SECRET_KEY_KID,
    Settings,
    describe_error,
)
from tests import PROJECT_DIR, databases

STRONG_SECRET = "s" * 32
PRODUCTION = {"ENVIRONMENT": "production", "SECRET_KEY": STRONG_SECRET, "ALLOWED_HOSTS": "api.test"}


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def _error(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        _settings(**values)
    return describe_error(caught.value)


def test_defaults_are_fine_locally() -> None:
    settings = _settings(ENVIRONMENT="local")
    assert settings.ACCESS_TOKEN_EXPIRE_MINUTES == 15
    assert settings.REFRESH_TOKEN_EXPIRE_DAYS == 7
    assert settings.JWT_LEEWAY_SECONDS == 30
    cpus = len(os.sched_getaffinity(0))
    assert cpus == settings.PASSWORD_HASH_CONCURRENCY
    assert settings.docs_enabled is True


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (DEFAULT_SECRET_KEY, "SECRET_KEY must be set in production"),
        ("s" * 31, "SECRET_KEY must be at least 32 bytes in production"),
    ],
)
def test_production_refuses_a_weak_secret(secret: str, reason: str) -> None:
    message = _error(ENVIRONMENT="production", SECRET_KEY=secret)
    assert reason in message
    assert secret not in message
    assert "\n" not in message


def test_production_refuses_wildcard_cors() -> None:
    message = _error(**PRODUCTION, CORS_ORIGINS="*")
    assert "CORS_ORIGINS" in message


def test_production_with_a_strong_secret_starts_without_docs() -> None:
    settings = _settings(**PRODUCTION)
    assert settings.docs_enabled is False
    assert _settings(**PRODUCTION, DOCS_ENABLED=True).docs_enabled


def test_cors_origins_accept_a_comma_separated_list() -> None:
    settings = _settings(CORS_ORIGINS="https://a.example.com, http://localhost:3000/")
    assert settings.CORS_ORIGINS == ["https://a.example.com", "http://localhost:3000"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"CORS_ORIGINS": "a.example.com"}, "CORS_ORIGINS"),
        ({"ENVIRONMENT": "staging"}, "ENVIRONMENT"),
        ({"ACCESS_TOKEN_EXPIRE_MINUTES": 0}, "ACCESS_TOKEN_EXPIRE_MINUTES"),
        ({"ACCESS_TOKEN_EXPIRE_MINUTES": "soon"}, "ACCESS_TOKEN_EXPIRE_MINUTES"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"DATABASE_URL": "sqlite:///sync.db"}, "DATABASE_URL"),
        *databases.BAD_SETTINGS,
        ({"RATE_LIMIT_DEFAULT": "lots"}, "RATE_LIMIT_DEFAULT"),
        ({"RATE_LIMIT_LOGIN": "0/minute"}, "RATE_LIMIT_LOGIN"),
        ({"RATE_LIMIT_LOGIN_USERNAME": ""}, "RATE_LIMIT_LOGIN_USERNAME"),
        ({"RATE_LIMIT_REGISTER": "5/fortnight"}, "RATE_LIMIT_REGISTER"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": "10.0.0.1/8"}, "TRUSTED_PROXIES"),
        ({"ALLOWED_HOSTS": "https://api.example.com"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "api.*.com"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "api_test"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": '"api.test"'}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": '["api.test"'}, "ALLOWED_HOSTS"),
        ({"CORS_ORIGINS": '["https://a.test",]'}, "CORS_ORIGINS"),
        ({"MAX_REQUEST_BODY_BYTES": 10}, "MAX_REQUEST_BODY_BYTES"),
        ({"JWT_LEEWAY_SECONDS": -1}, "JWT_LEEWAY_SECONDS"),
        ({"JWT_LEEWAY_SECONDS": 3600}, "JWT_LEEWAY_SECONDS"),
        ({"PASSWORD_HASH_CONCURRENCY": 0}, "PASSWORD_HASH_CONCURRENCY"),
        ({"FRONTEND_URL": "app.example.com"}, "FRONTEND_URL"),
        ({"FRONTEND_URL": "ftp://app.example.com"}, "FRONTEND_URL"),
        ({"PASSWORD_RESET_TOKEN_MINUTES": 0}, "PASSWORD_RESET_TOKEN_MINUTES"),
        ({"EMAIL_VERIFICATION_TOKEN_HOURS": 721}, "EMAIL_VERIFICATION_TOKEN_HOURS"),
        ({"REQUIRE_VERIFIED_EMAIL": "sometimes"}, "REQUIRE_VERIFIED_EMAIL"),
        ({"RATE_LIMIT_EMAIL_REQUESTS": "lots"}, "RATE_LIMIT_EMAIL_REQUESTS"),
        ({"RATE_LIMIT_EMAILS_PER_RECIPIENT": "0/hour"}, "RATE_LIMIT_EMAILS_PER_RECIPIENT"),
    ],
)
def test_bad_values_are_named(values: dict[str, Any], field: str) -> None:
    message = _error(**values)
    assert message.startswith("invalid configuration: ")
    assert field in message


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("not a url", "is not a database URL"),
        ("://nothing", "is not a database URL"),
        ("mysql+aiomysql://root@localhost/app", "uses 'mysql+aiomysql'"),
        *databases.REFUSED_URLS,
    ],
)
def test_database_url_is_checked_at_start_up(url: str, complaint: str) -> None:
    message = _error(DATABASE_URL=url)
    assert f"DATABASE_URL: {complaint}" in message
    assert "expected a URL like" in message or "expected one like" in message


def test_database_url_secrets_stay_out_of_the_message() -> None:
    message = _error(DATABASE_URL="mysql+aiomysql://root:hunter2-secret@localhost/app")
    assert "hunter2-secret" not in message


def test_the_keyring_is_secret_key_alone_by_default() -> None:
    settings = _settings(SECRET_KEY=STRONG_SECRET)
    assert settings.jwt_signing_kid == SECRET_KEY_KID
    assert {kid: key.get_secret_value() for kid, key in settings.jwt_keys.items()} == {
        SECRET_KEY_KID: STRONG_SECRET
    }


def test_jwt_keys_replace_secret_key_and_the_active_kid_signs() -> None:
    settings = _settings(
        JWT_KEYS=" old : o-secret , new:n-secret:with-colon ", JWT_ACTIVE_KID="new"
    )
    keys = {kid: key.get_secret_value() for kid, key in settings.jwt_keys.items()}
    assert keys == {"old": "o-secret", "new": "n-secret:with-colon"}
    assert settings.jwt_signing_kid == "new"
    assert "o-secret" not in repr(settings)


def test_a_single_jwt_key_signs_without_naming_it() -> None:
    assert _settings(JWT_KEYS="only:o-secret").jwt_signing_kid == "only"
    assert _settings(JWT_KEYS="").jwt_signing_kid == SECRET_KEY_KID


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"JWT_KEYS": "hunter2-secret"}, "JWT_KEYS: entry 1 is not a kid:secret pair"),
        ({"JWT_KEYS": "a:hunter2,b"}, "JWT_KEYS: entry 2 is not a kid:secret pair"),
        ({"JWT_KEYS": "a:hunter2,a:hunter3"}, "JWT_KEYS: key id 'a' appears twice"),
        (
            {"JWT_KEYS": "a b:hunter2"},
            "JWT_KEYS: entry 1: a key id is 1 to 64 letters, digits, '.', '_' or '-'",
        ),
        (
            {"JWT_KEYS": ":hunter2"},
            "JWT_KEYS: entry 1: a key id is 1 to 64 letters, digits, '.', '_' or '-'",
        ),
        ({"JWT_KEYS": "a:hunter2,b: "}, "JWT_KEYS: key 'b' is empty"),
        (
            {"JWT_KEYS": "a:hunter2,b:hunter3"},
            "JWT_ACTIVE_KID must name the signing key, one of: a, b",
        ),
        (
            {"JWT_KEYS": "a:hunter2", "JWT_ACTIVE_KID": "c"},
            "JWT_ACTIVE_KID is not a key id of the keyring (a)",
        ),
        ({"JWT_ACTIVE_KID": "c"}, "JWT_ACTIVE_KID is not a key id of the keyring (main)"),
    ],
    ids=[
        "no-colon",
        "second-entry",
        "duplicate",
        "bad-kid",
        "empty-kid",
        "empty-key",
        "no-active",
        "unknown-active",
        "unknown-active-single",
    ],
)
def test_a_bad_keyring_is_named_without_its_secrets(values: dict[str, str], reason: str) -> None:
    message = _error(**values)
    assert message == f"invalid configuration: {reason}"
    assert "hunter" not in message


def test_production_refuses_a_short_jwt_key() -> None:
    message = _error(
        **PRODUCTION,
        JWT_KEYS=f"old:{STRONG_SECRET},new:{'n' * 31}",
        JWT_ACTIVE_KID="new",
    )
    assert (
        message
        == "invalid configuration: JWT_KEYS key 'new' must be at least 32 bytes in production"
    )
    strong = _settings(
        **PRODUCTION,
        JWT_KEYS=f"old:{STRONG_SECRET},new:{'n' * 32}",
        JWT_ACTIVE_KID="new",
    )
    assert strong.jwt_signing_kid == "new"


def test_production_with_jwt_keys_needs_no_secret_key() -> None:
    """SECRET_KEY signs nothing once JWT_KEYS is set, so production does not ask for it."""
    settings = _settings(
        ENVIRONMENT="production", ALLOWED_HOSTS="api.test", JWT_KEYS=f"a:{STRONG_SECRET}"
    )
    assert settings.jwt_signing_kid == "a"


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS384", 48), ("HS512", 64)])
def test_production_keys_are_as_long_as_the_hash(algorithm: str, minimum: int) -> None:
    short = "k" * (minimum - 1)
    message = _error(**{**PRODUCTION, "SECRET_KEY": short}, JWT_ALGORITHM=algorithm)
    assert message == (
        f"invalid configuration: SECRET_KEY must be at least {minimum} bytes in production"
    )
    long_enough = _settings(**{**PRODUCTION, "SECRET_KEY": "k" * minimum}, JWT_ALGORITHM=algorithm)
    assert long_enough.jwt_keys["main"].get_secret_value() == "k" * minimum


def test_rate_limits_hardening_lists_and_production_hosts() -> None:
    settings = _settings(
        RATE_LIMIT_LOGIN="5 per minute;50/day",
        TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7, ::1",
        ALLOWED_HOSTS="API.example.com, *.example.org",
    )
    assert [str(network) for network in settings.TRUSTED_PROXIES] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "::1/128",
    ]
    assert settings.ALLOWED_HOSTS == ["api.example.com", "*.example.org"]
    # A JSON list, as other settings tools write lists, says the same.
    as_json = _settings(
        TRUSTED_PROXIES='["10.0.0.0/8", "::1"]',
        ALLOWED_HOSTS='["API.example.com", "*.example.org"]',
        CORS_ORIGINS='["https://app.example.com"]',
    )
    assert as_json.ALLOWED_HOSTS == settings.ALLOWED_HOSTS
    assert [str(network) for network in as_json.TRUSTED_PROXIES] == ["10.0.0.0/8", "::1/128"]
    assert as_json.CORS_ORIGINS == ["https://app.example.com"]
    message = _error(ENVIRONMENT="production", SECRET_KEY=STRONG_SECRET)
    assert message == (
        "invalid configuration: ALLOWED_HOSTS must list the API's host names in production"
    )
    assert "'lots' is not a rate limit such as '5/minute'" in _error(RATE_LIMIT_DEFAULT="lots")


def test_bad_config_stops_the_server_with_one_line() -> None:
    """What an operator sees when production starts with no secret: one line, no traceback."""
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env["ENVIRONMENT"] = "production"
    # As the server would import it, minus the developer's `.env` (it may hold a good secret).
    script = (
        "from app.core.config import Settings\n"
        "Settings.model_config['env_file'] = None\n"
        "import app.main\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == ("invalid configuration: SECRET_KEY must be set in production")
    assert "Traceback" not in result.stderr
