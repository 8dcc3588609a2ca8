"""HTTP caching and lost-update protection (RFC 9110 section 13, RFC 9111).

A resource's routes use three pieces:

- `IfNoneMatch` on a read: `respond(representation)` tags it with its ETag, or answers
  `304 Not Modified` (no body) when the client already holds that representation.
- `IfMatch` on a write: `await check(session, row, Schema)` re-reads the row locked for the
  rest of the transaction and answers 412 unless the client's ETag is still current, so of two
  clients editing the same version only the first wins; `tag(representation)` gives the
  response the new ETag. `If-Match` is optional: without it the write happens unconditionally.
- `private_cache`, a dependency of every protected route (app/api.py): its responses may be
  kept by the client alone, and only after asking again (`Cache-Control: private, no-cache`).
  Error responses are never stored at all (`no-store`, see `problem_response`).

The ETag is a hash of the representation's JSON, so two different representations never share
one, and a write that changes nothing keeps it.
"""

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import PreconditionFailed, problem_responses
from app.core.schemas import SingleLine

# Successful authenticated responses: only the client's own cache may keep them, and it must
# revalidate (with If-None-Match) before each use. Shared caches store nothing.
PRIVATE_CACHE_CONTROL = "private, no-cache"
VARY = "Authorization"

# Longer values are a 422, like any other over-long parameter.
MAX_HEADER_LENGTH = 2048

SchemaT = TypeVar("SchemaT", bound=BaseModel)

# One entity-tag (RFC 9110 section 8.8.3), optionally weak, and what may follow it in a list.
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|\Z)')


@dataclass(frozen=True)
class EntityTag:
    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.opaque}"'


@dataclass(frozen=True)
class TagList:
    """An If-Match or If-None-Match value: `*` (any current representation) or a list of tags.

    A value that is not valid matches nothing: If-None-Match then gets the full response and
    If-Match a 412, never a write the client did not make conditional on what it had seen.
    """

    any: bool
    tags: tuple[EntityTag, ...]

    def matches_strongly(self, etag: EntityTag) -> bool:
        """If-Match: both tags strong and equal."""
        if self.any:
            return True
        return not etag.weak and any(not t.weak and t.opaque == etag.opaque for t in self.tags)

    def matches_weakly(self, etag: EntityTag) -> bool:
        """If-None-Match: equal once any W/ is set aside."""
        return self.any or any(t.opaque == etag.opaque for t in self.tags)


NO_TAGS = TagList(any=False, tags=())


def parse_tag_list(value: str) -> TagList:
    """Parse `*` or a comma-separated list of entity-tags (empty list elements are allowed)."""
    if value.strip(" \t") == "*":
        return TagList(any=True, tags=())
    tags: list[EntityTag] = []
    position = 0
    while True:
        while position < len(value) and value[position] in " \t,":
            position += 1  # whitespace and empty list elements
        if position == len(value):
            return TagList(any=False, tags=tuple(tags))
        found = _ENTITY_TAG.match(value, position)
        if found is None:
            return NO_TAGS
        tags.append(EntityTag(opaque=found.group(2), weak=found.group(1) is not None))
        position = found.end()


def _etag_of_body(body: bytes) -> EntityTag:
    digest = hashlib.sha256(body).digest()
    return EntityTag(base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def etag_of(representation: BaseModel) -> EntityTag:
    """A strong ETag: a hash of exactly the JSON the client receives."""
    return _etag_of_body(representation.model_dump_json().encode())


def _received(request: Request, name: str) -> TagList | None:
    """The header's tags, its field lines joined as one list (RFC 9110 section 5.3)."""
    lines = request.headers.getlist(name)
    return parse_tag_list(", ".join(lines)) if lines else None


@dataclass(frozen=True)
class ReadPreconditions:
    received: TagList | None
    response: Response

    def respond(self, representation: BaseModel) -> Response:
        """The representation with its ETag, or a bodyless 304 if the client has it already.

        The body is the very JSON the ETag hashes, serialized once: the response is made here,
        so FastAPI neither validates nor serializes the representation a second time. It
        carries the headers the route's dependencies set (Cache-Control, Vary).
        """
        body = representation.model_dump_json().encode()
        etag = _etag_of_body(body)
        if self.received is not None and self.received.matches_weakly(etag):
            return not_modified(etag)
        response = Response(body, media_type="application/json")
        response.headers.raw.extend(
            (name, value) for name, value in self.response.headers.raw if name != b"content-length"
        )
        response.headers["ETag"] = str(etag)
        return response


@dataclass(frozen=True)
class WritePreconditions:
    received: TagList | None
    response: Response

    async def check(self, session: AsyncSession, row: Any, schema: type[BaseModel]) -> None:
        """Raise PreconditionFailed unless If-Match (if sent) matches the row's current ETag.

        The row is read again under a row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite's
        BEGIN IMMEDIATE already holds the write lock), so a request racing with the same
        ETag waits here, then sees the first one's change and fails.
        """
        if self.received is None:
            return
        identity = inspect(row).identity
        current = await session.get(
            type(row), identity, with_for_update=True, populate_existing=True
        )
        # Gone meanwhile: no current representation, which no If-Match matches.
        if current is None or not self.received.matches_strongly(
            etag_of(schema.model_validate(current))
        ):
            raise PreconditionFailed

    def tag(self, representation: SchemaT) -> SchemaT:
        """Give the response the ETag of the representation the write produced."""
        self.response.headers["ETag"] = str(etag_of(representation))
        return representation


async def _read_preconditions(
    request: Request,
    response: Response,
    if_none_match: Annotated[
        Annotated[str, SingleLine] | None,
        Header(
            max_length=MAX_HEADER_LENGTH,
            description="ETags of representations you hold (or `*`): 304 if one is current.",
        ),
    ] = None,
) -> ReadPreconditions:
    return ReadPreconditions(received=_received(request, "if-none-match"), response=response)


async def _write_preconditions(
    request: Request,
    response: Response,
    if_match: Annotated[
        Annotated[str, SingleLine] | None,
        Header(
            max_length=MAX_HEADER_LENGTH,
            description=(
                "Optional. The ETag you last read: the change is made only if it is still "
                "current, otherwise 412 and nothing changes (protection from lost updates)."
            ),
        ),
    ] = None,
) -> WritePreconditions:
    return WritePreconditions(received=_received(request, "if-match"), response=response)


IfNoneMatch = Annotated[ReadPreconditions, Depends(_read_preconditions)]
IfMatch = Annotated[WritePreconditions, Depends(_write_preconditions)]


def not_modified(etag: EntityTag) -> Response:
    """304: no body, and the headers the 200 would have had (RFC 9110 section 15.4.5)."""
    headers = {"ETag": str(etag), "Cache-Control": PRIVATE_CACHE_CONTROL, "Vary": VARY}
    return Response(status_code=304, headers=headers)


async def private_cache(response: Response) -> None:
    """Authenticated responses are the client's own: never kept by a shared cache.

    A route may set a stricter policy of its own (token responses are `no-store`).
    """
    response.headers["Cache-Control"] = PRIVATE_CACHE_CONTROL
    response.headers["Vary"] = VARY


_ETAG_HEADER = {
    "ETag": {"description": "The representation's entity-tag.", "schema": {"type": "string"}}
}


def read_responses() -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry of a read that answers with an ETag, or with 304."""
    return {
        200: {"headers": _ETAG_HEADER},
        304: {"description": "Not Modified: your copy is current.", "headers": _ETAG_HEADER},
    }


def write_responses(status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry of a write that honours If-Match (a 200 carries the new ETag)."""
    tagged: dict[int | str, dict[str, Any]] = {200: {"headers": _ETAG_HEADER}}
    return {**(tagged if status == 200 else {}), **problem_responses(412)}
