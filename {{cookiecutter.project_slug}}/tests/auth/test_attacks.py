"""Attacks on the bearer token, one test per attack (parametrized where it is one attack in
several shapes). Every one expects a refusal: 401 problem+json unless it names another status.

Forged tokens come from `forge`, which signs the claims it is given with the active key of the
keyring unless told otherwise: `test_control_*` show that, unchanged, its tokens are accepted,
so each attack fails only because of the one thing it changes. The attack count:
`pytest tests/auth/test_attacks.py --collect-only -q --no-cov -k "not control"`.
"""

import base64
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import MAX_TOKEN_LENGTH
from app.core.config import get_settings
from app.core.errors import PROBLEM_JSON
from app.core.security import REQUIRED_CLAIMS
from app.users.models import User
from tests.factories import DEFAULT_PASSWORD, auth_headers, login

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
REFRESH = "/api/v1/auth/refresh"
LOGOUT_ALL = "/api/v1/auth/logout-all"

Signer = Callable[[bytes], bytes]


def claims_for(user: User, **changes: object) -> dict[str, object]:
    """Claims the app accepts for this user; a change to None drops that claim."""
    settings = get_settings()
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(user.id),
        "type": "access",
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "ver": user.token_version,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(data: dict[str, object]) -> str:
    def encode(value: object) -> object:
        assert isinstance(value, datetime)
        return int(value.timestamp())

    return _b64(json.dumps(data, default=encode).encode())


def hmac_signer(key: bytes, digest: str = "sha256") -> Signer:
    return lambda signing_input: hmac.new(key, signing_input, digest).digest()


def active_key() -> bytes:
    settings = get_settings()
    return settings.jwt_keys[settings.jwt_signing_kid].get_secret_value().encode()


def forge(claims: dict[str, object], *, sign: Signer | None = None, **header: object) -> str:
    """A compact JWS built by hand, so that any header, payload or signature can be sent.

    Defaults: HS256 with the active key and its kid. A header value of None drops that field.
    """
    fields: dict[str, object] = {
        "alg": "HS256",
        "typ": "JWT",
        "kid": get_settings().jwt_signing_kid,
    }
    fields.update(header)
    kept = {name: value for name, value in fields.items() if value is not None}
    signing_input = f"{_segment(kept)}.{_segment(claims)}"
    signature = (sign or hmac_signer(active_key()))(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "invalid_token"


async def me(client: AsyncClient, token: str) -> httpx.Response:
    return await client.get(ME, headers=bearer(token))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# Controls: the forging machinery makes tokens the app accepts.


async def test_control_forged_token_is_accepted(client: AsyncClient, user: User) -> None:
    response = await me(client, forge(claims_for(user)))
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)


async def test_control_forged_token_decodes_like_an_issued_one(user: User) -> None:
    issued = auth_headers(user)["Authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(forge(claims_for(user))) == jwt.get_unverified_header(issued)


# Forged or foreign signatures.


class TestSignature:
    @pytest.mark.parametrize("alg", ["none", "None", "NONE"])
    async def test_alg_none(self, client: AsyncClient, user: User, alg: str) -> None:
        assert_refused(await me(client, forge(claims_for(user), alg=alg, sign=lambda _: b"")))

    async def test_signed_with_another_key(self, client: AsyncClient, user: User) -> None:
        other = b"an-attacker-key-that-is-long-enough-for-hs256"
        token = forge(claims_for(user), sign=hmac_signer(other))
        jwt.decode(token, other, algorithms=["HS256"], options={"verify_aud": False})
        assert_refused(await me(client, token))

    @pytest.mark.parametrize(("alg", "digest"), [("HS384", "sha384"), ("HS512", "sha512")])
    async def test_other_hmac_algorithm_with_the_right_key(
        self, client: AsyncClient, user: User, alg: str, digest: str
    ) -> None:
        """Only the configured algorithm is accepted, even with the right key."""
        token = forge(claims_for(user), alg=alg, sign=hmac_signer(active_key(), digest))
        assert_refused(await me(client, token))

    async def test_rs256_token(
        self, client: AsyncClient, user: User, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        def sign(signing_input: bytes) -> bytes:
            return rsa_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

        token = forge(claims_for(user), alg="RS256", sign=sign)
        # A genuine RS256 token: whoever trusts this RSA key accepts it.
        settings = get_settings()
        jwt.decode(
            token,
            rsa_key.public_key(),
            algorithms=["RS256"],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
        )
        assert_refused(await me(client, token))

    async def test_hmac_signed_with_public_key_material(
        self, client: AsyncClient, user: User, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """The algorithm-confusion attack: the public PEM used as an HMAC secret."""
        public_pem = rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert_refused(await me(client, forge(claims_for(user), sign=hmac_signer(public_pem))))

    async def test_tampered_payload(self, client: AsyncClient, user: User, admin: User) -> None:
        header, _, signature = forge(claims_for(user)).split(".")
        payload = _segment(claims_for(admin))
        assert_refused(await me(client, f"{header}.{payload}.{signature}"))

    async def test_tampered_signature(self, client: AsyncClient, user: User) -> None:
        header, payload, signature = forge(claims_for(user)).split(".")
        # The first character: the last one of a base64 signature may only hold padding bits.
        flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
        assert_refused(await me(client, f"{header}.{payload}.{flipped}"))

    async def test_unknown_kid(self, client: AsyncClient, user: User) -> None:
        assert_refused(await me(client, forge(claims_for(user), kid="retired-2020")))

    async def test_missing_kid(self, client: AsyncClient, user: User) -> None:
        assert_refused(await me(client, forge(claims_for(user), kid=None)))

    @pytest.mark.parametrize("kid", [["main"], 1, {"kid": "main"}], ids=["list", "int", "object"])
    async def test_kid_that_is_not_a_string(
        self, client: AsyncClient, user: User, kid: object
    ) -> None:
        assert_refused(await me(client, forge(claims_for(user), kid=kid)))


# Well signed, but the claims are wrong.


class TestClaims:
    async def test_expired(self, client: AsyncClient, user: User) -> None:
        """Expired by a second more than the clock-skew leeway allows."""
        past_leeway = timedelta(seconds=get_settings().JWT_LEEWAY_SECONDS + 1)
        expired = claims_for(user, exp=datetime.now(UTC) - past_leeway)
        assert_refused(await me(client, forge(expired)))

    async def test_not_yet_valid(self, client: AsyncClient, user: User) -> None:
        early = claims_for(user, nbf=datetime.now(UTC) + timedelta(minutes=5))
        assert_refused(await me(client, forge(early)))

    async def test_issued_in_the_future(self, client: AsyncClient, user: User) -> None:
        issued_later = claims_for(user, iat=datetime.now(UTC) + timedelta(minutes=5))
        assert_refused(await me(client, forge(issued_later)))

    async def test_wrong_audience(self, client: AsyncClient, user: User) -> None:
        assert_refused(await me(client, forge(claims_for(user, aud="another-api"))))

    async def test_wrong_issuer(self, client: AsyncClient, user: User) -> None:
        assert_refused(await me(client, forge(claims_for(user, iss="another-issuer"))))

    @pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
    async def test_missing_claim(self, client: AsyncClient, user: User, claim: str) -> None:
        assert_refused(await me(client, forge(claims_for(user, **{claim: None}))))

    async def test_refresh_type_claim(self, client: AsyncClient, user: User) -> None:
        assert_refused(await me(client, forge(claims_for(user, type="refresh"))))

    @pytest.mark.parametrize("spelling", [str, bool], ids=["string", "boolean"])
    async def test_version_of_another_type(
        self, client: AsyncClient, user: User, spelling: Callable[[int], object]
    ) -> None:
        """ "0" and false are not version 0, though false == 0 in Python."""
        assert user.token_version == 0
        version = spelling(user.token_version)
        assert_refused(await me(client, forge(claims_for(user, ver=version))))

    @pytest.mark.parametrize("sub", ["not-a-uuid", str(uuid.uuid4())], ids=["malformed", "nobody"])
    async def test_subject_is_no_user(self, client: AsyncClient, user: User, sub: str) -> None:
        assert_refused(await me(client, forge(claims_for(user, sub=sub))))


# One kind of token where the other is expected.


class TestConfusion:
    async def test_refresh_token_as_access_token(self, client: AsyncClient, user: User) -> None:
        tokens = await login(client, user.email)
        assert_refused(await me(client, tokens["refresh_token"]))

    async def test_access_token_as_refresh_token(self, client: AsyncClient, user: User) -> None:
        """A JWT is longer than any refresh token (at most 256 characters), so the payload
        itself is invalid: 422 before any lookup. The access token keeps working."""
        tokens = await login(client, user.email)
        response = await client.post(REFRESH, json={"refresh_token": tokens["access_token"]})
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM_JSON
        assert (await me(client, tokens["access_token"])).status_code == 200


# Tokens that were valid once, and no longer are.


class TestRevocation:
    async def test_deleted_user(
        self, client: AsyncClient, session: AsyncSession, user: User
    ) -> None:
        token = forge(claims_for(user))
        await session.delete(user)
        await session.flush()
        assert_refused(await me(client, token))

    async def test_deactivated_user(
        self, client: AsyncClient, user: User, admin_headers: dict[str, str]
    ) -> None:
        tokens = await login(client, user.email)
        deactivated = await client.patch(
            f"{USERS}/{user.id}", headers=admin_headers, json={"is_active": False}
        )
        assert deactivated.status_code == 200
        assert_refused(await me(client, tokens["access_token"]))
        refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401

    async def test_token_from_before_a_password_change(
        self, client: AsyncClient, user: User
    ) -> None:
        before, after = await login(client, user.email), await login(client, user.email)
        changed = await client.patch(
            ME,
            headers=bearer(after["access_token"]),
            json={"password": "a brand new password", "current_password": DEFAULT_PASSWORD},
        )
        assert changed.status_code == 200
        assert_refused(await me(client, before["access_token"]))

    async def test_token_from_before_logout_all(self, client: AsyncClient, user: User) -> None:
        here, elsewhere = await login(client, user.email), await login(client, user.email)
        logged_out = await client.post(LOGOUT_ALL, headers=bearer(here["access_token"]))
        assert logged_out.status_code == 204
        assert_refused(await me(client, elsewhere["access_token"]))
        assert_refused(await me(client, here["access_token"]))

    async def test_rotated_refresh_token_reused(self, client: AsyncClient, user: User) -> None:
        """A spent refresh token comes back: it may be stolen, so its whole login is revoked."""
        first = await login(client, user.email)
        other_login = await login(client, user.email)
        rotated = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200

        replay = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        assert replay.json()["code"] == "invalid_refresh_token"
        # The token the rotation issued belongs to the same family: revoked as well...
        newer = await client.post(REFRESH, json={"refresh_token": rotated.json()["refresh_token"]})
        assert newer.status_code == 401
        # ...while a separate login of the same user is untouched.
        separate = await client.post(REFRESH, json={"refresh_token": other_login["refresh_token"]})
        assert separate.status_code == 200


# Whatever a client can put in the Authorization header.


class TestHeader:
    async def test_no_authorization_header(self, client: AsyncClient) -> None:
        assert_refused(await client.get(ME))

    @pytest.mark.parametrize(
        "header",
        [
            "{token}",
            "Basic {token}",
            "Token {token}",
            "Bearer",
            "Bearer ",
            "Bearer" + " " * 64,
            "",
            "Bearer {token} {token}",
            "Bearer {token}.",
            "Bearer not.a.jwt",
            "Bearer ../../etc/passwd",
        ],
        ids=[
            "no-scheme",
            "basic-scheme",
            "token-scheme",
            "bearer-alone",
            "bearer-space",
            "bearer-many-spaces",
            "empty",
            "two-tokens",
            "extra-segment",
            "not-a-jwt",
            "path",
        ],
    )
    async def test_garbage(self, client: AsyncClient, user: User, header: str) -> None:
        token = forge(claims_for(user))
        value = header.format(token=token)
        assert_refused(await client.get(ME, headers={"Authorization": value}))

    @pytest.mark.parametrize(
        "suffix",
        [b"\xff", b"\xe9t\xe9", "\u00e9\u4e2d".encode()],
        ids=["latin-1-byte", "latin-1-word", "utf-8"],
    )
    async def test_non_ascii_bytes(self, client: AsyncClient, user: User, suffix: bytes) -> None:
        """A valid token followed by bytes outside ASCII (headers travel as latin-1)."""
        value = b"Bearer " + forge(claims_for(user)).encode() + suffix
        assert_refused(await client.get(ME, headers={b"Authorization": value}))

    async def test_hundred_kilobyte_token(self, client: AsyncClient, user: User) -> None:
        """Signed with the right key: only its size is wrong."""
        token = forge(claims_for(user, padding="x" * 100_000))
        assert len(token) > 100_000 > MAX_TOKEN_LENGTH
        assert_refused(await me(client, token))

    def test_hundred_kilobyte_token_served(self, server: tuple[str, Path]) -> None:
        """The same against uvicorn, whose header limits are what a client really meets."""
        base_url, _ = server
        with httpx.Client(base_url=base_url) as live:
            email = f"big-token-{uuid.uuid4().hex[:8]}@example.com"
            registered = live.post(
                "/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
            )
            assert registered.status_code == 201
            tokens = live.post(
                "/api/v1/auth/login", data={"username": email, "password": DEFAULT_PASSWORD}
            ).json()
            payload = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            big = forge({**payload, "padding": "x" * 100_000})
            assert live.get(ME, headers=bearer(forge(payload))).status_code == 200
            response = live.get(ME, headers=bearer(big))
            # 431 if the server's header limit stops it first, 401 if the app does; never 500.
            assert response.status_code in {401, 431}
            if response.status_code == 401:
                assert_refused(response)
            # The server survives it.
            assert live.get("/api/v1/health/live").status_code == 200
