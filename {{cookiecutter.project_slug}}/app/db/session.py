"""Session factories and the one-unit-of-work-per-request session dependency."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from app.core.errors import AppError
from app.db.engine import read_only_engine

# Session.info flag of the sessions GET and HEAD requests read with (no transaction).
READ_ONLY = "read_only"


def create_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writes (one transaction each), or for reads (`read_only_engine`)."""
    if read_only:
        return async_sessionmaker(
            read_only_engine(engine), expire_on_commit=False, info={READ_ONLY: True}
        )
    return async_sessionmaker(engine, expire_on_commit=False)


# Methods that only read (RFC 9110, section 9.2.1): they read outside a transaction.
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """The factory made at start-up for this request's method: GET and HEAD read without a
    transaction, everything else gets one (tests swap in one bound to a rolled-back
    transaction, for every method)."""
    state = request.app.state
    if request.method in READ_ONLY_METHODS:
        reads: async_sessionmaker[AsyncSession] = state.read_sessionmaker
        return reads
    writes: async_sessionmaker[AsyncSession] = state.sessionmaker
    return writes


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


# Set in Session.info while the session's transaction holds changes flushed to the database.
_WROTE = "wrote_in_transaction"


class WriteInReadOnlySession(RuntimeError):
    """A GET or HEAD request tried to write: a bug, refused before anything is written."""


@event.listens_for(Session, "before_flush")
def _refuse_flush_when_read_only(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY):
        raise WriteInReadOnlySession("GET and HEAD requests may not write")


@event.listens_for(Session, "after_flush")
def _mark_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _mark_bulk_write(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        if state.session.info.get(READ_ONLY):
            raise WriteInReadOnlySession("GET and HEAD requests may not write")
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _clear_mark(session: Session) -> None:
    session.info.pop(_WROTE, None)


async def end_read_only_transaction(session: AsyncSession) -> None:
    """End the request's transaction before slow work that needs no database.

    Password hashing takes a tenth of a second or more; a transaction left open meanwhile holds
    a pooled connection, and on SQLite the write lock, for nothing. Services call this after
    their reads and before hashing: it commits the transaction, which holds only reads, so
    nothing is stored, and the objects loaded so far stay usable (expire_on_commit=False). The
    session's next statement opens a new transaction, which the session dependency commits or
    rolls back as usual, so the request still stores all of its writes or none of them.

    Refuses (RuntimeError) when the transaction holds changes, pending or flushed: committing
    them here would break that rule.
    """
    if session.new or session.dirty or session.deleted or session.info.get(_WROTE):
        raise RuntimeError("the transaction holds changes; only a read-only one may end early")
    if session.in_nested_transaction():
        raise RuntimeError("a savepoint is open; only a read-only transaction may end early")
    await session.commit()


async def get_session(factory: SessionmakerDep) -> AsyncIterator[AsyncSession]:
    """One session per request, and one transaction for its writes.

    Commits once after the endpoint returns and before the response is sent, or rolls back on
    any exception, so a client never sees a success whose data was not stored. GET and HEAD
    requests read without a transaction (`read_only_engine`): nothing to commit, and a write
    there is refused as a bug. A service may end a transaction that only read before it hashes
    a password (`end_read_only_transaction`).
    """
    async with factory() as session:
        if session.info.get(READ_ONLY):
            yield session
            return
        try:
            yield session
        except AppError as error:
            if error.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
