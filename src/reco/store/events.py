"""Live events for the service: validate a batch, append it durably, read a user's new ones.

* :func:`events_frame` turns records (JSON-like mappings) into the canonical interaction
  frame, checking every record first: one bad event rejects the batch with a message
  listing each bad one.
* :func:`append_events` stores a batch in one transaction through
  :mod:`reco.store.repository`, so it is deduplicated like any ingest (by
  ``event_id`` when given); a small batch goes the plain-Python way, without pandas,
  and shares its transaction with the small batches other threads append at the same
  moment (:class:`GroupCommit`).
* :func:`events_since` and :func:`watermark` let the service add what happened after a
  model's training snapshot to that model's histories.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from reco.data import schema
from reco.data.schema import Frames
from reco.errors import RecoError, ValidationError
from reco.store.db import redacted, write_transaction, writer_lock
from reco.store.entities import _shown, id_problem, user_state_on
from reco.store.prepare import FEW_ROWS, EventRows, event_rows
from reco.store.repository import ingest, insert_event_rows, read_watermark
from reco.store.tables import MAX_ID_LENGTH, interactions

__all__ = [
    "AppendResult",
    "GroupCommit",
    "append_events",
    "events_frame",
    "events_since",
    "group_commit",
    "watermark",
]

FIELDS = (
    schema.USER,
    schema.ITEM,
    schema.EVENT_TYPE,
    schema.TIMESTAMP,
    schema.VALUE,
    schema.EVENT_ID,
)
_FIELD_SET = frozenset(FIELDS)
# Timestamps at or past this (year 3000) are taken for a mistake, most likely
# milliseconds given for seconds.
_LATEST_TIMESTAMP = 32_503_680_000
# Users per events_since statement: bounded IN lists, well under every backend's limit.
_USERS_PER_QUERY = 500

_EVENT_COLUMNS = (
    interactions.c.id,
    interactions.c.user_id,
    interactions.c.item_id,
    interactions.c.timestamp,
    interactions.c.value,
    interactions.c.event_type,
    interactions.c.event_id,
)
_SINCE = (
    select(*_EVENT_COLUMNS)
    .where(
        interactions.c.user_id.in_(bindparam("user_ids", expanding=True)),
        interactions.c.id > bindparam("after_id"),
    )
    .order_by(interactions.c.id)
)
# One user's: a plain parameter compiles once, an expanding list on every call.
_USER_SINCE = (
    select(*_EVENT_COLUMNS)
    .where(
        interactions.c.user_id == bindparam("user_id"),
        interactions.c.id > bindparam("after_id"),
    )
    .order_by(interactions.c.id)
)


@dataclass(frozen=True)
class AppendResult:
    """What :func:`append_events` did: ``accepted`` events were newly stored,
    ``duplicates`` were already stored (or repeated within the batch) and skipped.
    Together they count every record of the batch."""

    accepted: int
    duplicates: int


def _timestamp(value: Any) -> tuple[int | None, str | None]:
    """Whole epoch seconds (fractions dropped) from a number, digits, ISO 8601 text or a
    datetime, or the problem ("<reason>; <fix>"). Text without a time zone is UTC."""
    seconds: float | None = None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        seconds = math.floor(moment.timestamp())
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None, (
                    f"{_shown(value)} is neither epoch seconds nor an ISO 8601 date-time; "
                    'give e.g. 1700000000 or "2023-11-14T22:13:20Z"'
                )
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            seconds = math.floor(moment.timestamp())
    if seconds is None:
        return None, (
            f"{_shown(value)} is a {type(value).__name__}; give epoch seconds, an ISO 8601 "
            "date-time, or leave it out (the event then happened now)"
        )
    if not math.isfinite(seconds):
        return None, f"{seconds!r} is not a time; give epoch seconds"
    if not 0 <= seconds < _LATEST_TIMESTAMP:
        return None, (
            f"{int(seconds)} is not a time between 1970 and 3000; give seconds since "
            "1970 (not milliseconds: divide those by 1000)"
        )
    # The store keeps whole seconds; a client's fraction (Date.now() / 1000) is dropped.
    return math.floor(seconds), None


def _plain_id(value: Any) -> bool:
    """True for the common id that needs no closer look: printable ASCII text, not
    blank, at most MAX_ID_LENGTH characters (:func:`id_problem` accepts every one)."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and not value.isspace()
    )


def _value(value: Any) -> tuple[float, str | None]:
    if value is None:
        return math.nan, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan, f"{_shown(value)} is a {type(value).__name__}; give a number or null"
    if not math.isfinite(value):
        return math.nan, f"{value!r} is not a finite number; give one or null"
    return float(value), None


class _Checked(NamedTuple):
    """A valid batch as plain columns: ids as text, whole epoch seconds, NaN for no
    value, None for no event id."""

    users: list[str]
    items: list[str]
    timestamps: list[int]
    values: list[float]
    event_types: list[str]
    event_ids: list[str | None]


def _checked(records: Sequence[Mapping[str, Any]]) -> _Checked:
    """Every record checked (see :func:`events_frame`), in plain Python: a single live
    event must cost microseconds here, not the milliseconds of a DataFrame."""
    if isinstance(records, Mapping) or not isinstance(records, Sequence):
        raise ValidationError(
            [f"the batch is a {type(records).__name__}; give a list of event objects."],
            source="events",
        )
    now = int(time.time())
    n = len(records)
    users: list[str] = [""] * n
    items: list[str] = [""] * n
    types: list[str] = [schema.DEFAULT_EVENT_TYPE] * n
    stamps: list[int] = [now] * n
    values: list[float] = [math.nan] * n
    event_ids: list[str | None] = [None] * n
    problems: list[str] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.append(
                f"event {index}: {_shown(record)} is not an object; give an object with "
                "user_id and item_id."
            )
            continue
        if not record.keys() <= _FIELD_SET:
            unknown = [str(k) for k in record if k not in _FIELD_SET]
            problems.append(
                f"event {index}: {', '.join(map(_shown, unknown))}: unknown field(s); the "
                f"fields are {', '.join(FIELDS)}."
            )
        for field, out in ((schema.USER, users), (schema.ITEM, items)):
            raw = record.get(field)
            if _plain_id(raw):
                out[index] = raw
            elif raw is None:
                problems.append(f"event {index}: {field}: is missing; every event needs one.")
            elif problem := id_problem(raw):
                problems.append(f"event {index}: {field}: {problem}.")
            else:
                out[index] = str(raw)
        for field in (schema.EVENT_TYPE, schema.EVENT_ID):
            raw = record.get(field)
            if raw is None:
                continue
            if not _plain_id(raw) and (problem := id_problem(raw)):
                problems.append(f"event {index}: {field}: {problem}, or leave it out.")
            elif field == schema.EVENT_TYPE:
                types[index] = str(raw)
            else:
                event_ids[index] = str(raw)
        raw = record.get(schema.TIMESTAMP)
        if type(raw) is int and 0 <= raw < _LATEST_TIMESTAMP:
            stamps[index] = raw
        elif raw is not None:
            seconds, problem = _timestamp(raw)
            if problem:
                problems.append(f"event {index}: timestamp: {problem}.")
            else:
                stamps[index] = int(seconds)
        raw = record.get(schema.VALUE)
        if type(raw) is float and math.isfinite(raw):
            values[index] = raw
        elif raw is not None:
            values[index], problem = _value(raw)
            if problem:
                problems.append(f"event {index}: value: {problem}.")
    if problems:
        raise ValidationError(problems, source="events")
    return _Checked(users, items, stamps, values, types, event_ids)


def events_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The canonical interaction frame of a batch of events, in batch order.

    Each record has ``user_id`` and ``item_id`` (required), and optionally
    ``event_type`` (default "interaction"), ``timestamp`` (epoch seconds or an ISO 8601
    date-time, UTC when it names no zone, fractions of a second dropped; default now,
    since a live event happens now),
    ``value`` (a number) and ``event_id`` (makes retries idempotent). Ids are strings
    (integers are taken as their text) of at most 512 characters without control
    characters.

    Every record is checked; if any is bad, raises one ValidationError whose problems
    read ``event <index>: <field>: <reason>; <fix>`` (index from 0), one per problem.
    """
    return _frame_of(_checked(records))


def _frame_of(checked: _Checked) -> pd.DataFrame:
    event_ids = np.empty(len(checked.event_ids), dtype=object)
    event_ids[:] = checked.event_ids
    return _canonical(
        checked.users,
        checked.items,
        np.array(checked.timestamps, dtype=np.int64),
        None,
        np.array(checked.values, dtype=np.float64),
        checked.event_types,
        event_ids,
    )


def _canonical(
    users: list[str],
    items: list[str],
    stamps: np.ndarray,
    missing_stamps: np.ndarray | None,
    values: np.ndarray,
    types: list[str],
    event_ids: np.ndarray,
) -> pd.DataFrame:
    """A frame with exactly the canonical columns and dtypes of :mod:`reco.data.schema`.

    Built from arrays rather than Series: a third of the cost, which matters at one
    event per request.
    """
    if missing_stamps is None:
        missing_stamps = np.zeros(len(stamps), dtype=bool)
    return pd.DataFrame(
        {
            schema.USER: pd.array(users, dtype=schema.STR),
            schema.ITEM: pd.array(items, dtype=schema.STR),
            schema.TIMESTAMP: pd.arrays.IntegerArray(stamps, missing_stamps),
            schema.VALUE: values,
            schema.EVENT_TYPE: pd.array(types, dtype=schema.STR),
            # A Series, or pandas would infer strings and turn None into NaN.
            schema.EVENT_ID: pd.Series(event_ids, dtype=object, copy=False),
        },
        index=pd.RangeIndex(len(users)),
        copy=False,
    )


def _empty() -> pd.DataFrame:
    return _canonical([], [], np.zeros(0, np.int64), None, np.zeros(0), [], np.empty(0, object))


def append_events(
    engine: Engine, records: Sequence[Mapping[str, Any]], *, source: str = "api"
) -> AppendResult:
    """Validate and store a batch of events in one transaction: all of it or nothing.

    Events already stored (same ``event_id``, or without ids the same user, item,
    timestamp and event type) are skipped, so a retried request adds nothing. Raises
    ValidationError as :func:`events_frame` does, and RecoError when the store refuses
    the batch; in both cases nothing is stored.

    Batches of up to :data:`~reco.store.prepare.FEW_ROWS` events never become a
    DataFrame: they are keyed and written in plain Python (the same keys and rows).
    """
    checked = _checked(records)
    if not checked.users:
        return AppendResult(accepted=0, duplicates=0)
    if len(checked.users) <= FEW_ROWS:
        rows = event_rows(
            checked.users,
            checked.items,
            checked.timestamps,
            checked.values,
            checked.event_types,
            checked.event_ids,
        )
        added = group_commit(engine).append(rows, source)
        return AppendResult(accepted=added, duplicates=rows.received - added)
    report = ingest(engine, Frames(interactions=_frame_of(checked)), source=source)
    return AppendResult(accepted=report.interactions_added, duplicates=report.duplicates_skipped)


# Most rows one shared transaction takes (a request holds at most FEW_ROWS).
_GROUP_ROWS = 4 * FEW_ROWS
_GROUPS: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


def group_commit(engine: Engine) -> GroupCommit:
    """The engine's :class:`GroupCommit` (one per engine and process, made on first use):
    what :func:`append_events` writes small batches through."""
    with _GROUPS_LOCK:
        group = _GROUPS.get(engine)
        if group is None:
            group = _GROUPS[engine] = GroupCommit(engine)
        return group


class _Append:
    """One caller's batch waiting in a GroupCommit, and what became of it."""

    __slots__ = ("added", "done", "error", "leads", "rows", "source")

    def __init__(self, rows: EventRows, source: str) -> None:
        self.rows = rows
        self.source = source
        self.done = threading.Event()
        self.leads = False
        self.added = 0
        self.error: BaseException | None = None


class GroupCommit:
    """Group commit: small batches appended by concurrent threads share transactions.

    Each transaction costs the same (a lock, a commit, pages to the log, and on a
    synchronous store an fsync) whether it carries one event or a thousand, so under
    load one transaction per request is what limits ingestion. Here the first caller
    becomes the *leader*: it writes every batch queued at that moment in one
    transaction, one statement per batch (so each caller learns its own count of new
    rows), commits, and wakes their callers; batches that arrive meanwhile wait for the
    next transaction, which the first of them leads. Alone, a caller just writes its
    own batch: no waiting, no timer.

    Every caller returns only once its batch is committed: acknowledged events are
    durable as before. When a shared transaction fails because of its data (a
    constraint, a value the database refuses), each batch is written again alone, so
    one caller's bad batch never fails another's; when the store itself fails (down,
    locked), every caller of that transaction gets the error.
    """

    def __init__(self, engine: Engine, *, max_rows: int = _GROUP_ROWS) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: list[_Append] = []
        self._leader = False

    @property
    def queued(self) -> int:
        """Batches waiting for the next transaction."""
        with self._lock:
            return len(self._queue)

    def append(self, rows: EventRows, source: str) -> int:
        """Store ``rows`` (already validated and keyed) with the batches of concurrent
        callers; return how many were new. Raises RecoError when the store refuses."""
        mine = _Append(rows, source)
        with self._lock:
            self._queue.append(mine)
            mine.leads = not self._leader
            self._leader = True
        if not mine.leads:
            mine.done.wait()
        if mine.leads:  # first in, or handed the lead while waiting
            self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.added

    def _lead(self) -> None:
        """Write the queued batches in one transaction, then hand the lead to the next
        waiting caller (or give it up): the leader's own answer waits for one
        transaction only."""
        group: list[_Append] = []
        try:
            # The batches queued while this leader waits for another process's
            # transaction join its own: under contention transactions grow, not queue.
            with writer_lock(self.engine):
                group = self._take()
                self._write(group)
        except Exception as exc:
            if group:
                raise
            # The writer lock could not be taken (_write keeps its own errors): every
            # queued batch fails with that, none waits for a leader that gave up.
            group = self._take()
            for member in group:
                member.error = _store_error(self.engine, member, exc)
        finally:
            for member in group:
                member.done.set()
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.done.set()
                else:
                    self._leader = False

    def _take(self) -> list[_Append]:
        with self._lock:
            count, rows = 0, 0
            for member in self._queue:
                if count and rows + len(member.rows) > self.max_rows:
                    break
                count += 1
                rows += len(member.rows)
            group = self._queue[:count]
            del self._queue[:count]
        for member in group:
            member.leads = False
        return group

    def _write(self, group: list[_Append]) -> None:
        try:
            self._transaction(group)
        except BaseException as exc:
            if len(group) > 1 and _refused_data(self.engine, exc):
                for member in group:  # only the batch the database refuses fails
                    try:
                        self._transaction([member])
                    except BaseException as alone:
                        member.error = _store_error(self.engine, member, alone)
                return
            for member in group:
                member.error = _store_error(self.engine, member, exc)

    def _transaction(self, group: list[_Append]) -> None:
        with write_transaction(self.engine) as connection:
            added = [
                insert_event_rows(connection, member.rows, source=member.source) for member in group
            ]
        for member, count in zip(group, added, strict=True):
            member.added = count


def _refused_data(engine: Engine, exc: BaseException) -> bool:
    """True when the database refused the data itself (not: it is down or busy)."""
    if isinstance(exc, DBAPIError):
        return isinstance(exc, DataError | IntegrityError)
    driver = engine.dialect.loaded_dbapi  # the bulk writes use the driver directly
    return isinstance(exc, driver.DataError | driver.IntegrityError)


def _store_error(engine: Engine, member: _Append, exc: BaseException) -> BaseException:
    """The error a caller gets: database errors as the RecoError ``ingest`` raises."""
    if not isinstance(exc, DBAPIError | engine.dialect.loaded_dbapi.Error):
        return exc
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    error = RecoError(
        f"{member.source}: the store at {redacted(engine.url)} refused the batch, so nothing "
        f"was changed: {str(cause).strip()}"
    )
    error.__cause__ = exc
    return error


def events_since(engine: Engine, user_ids: Sequence[str], after_id: int) -> pd.DataFrame:
    """Those users' interactions stored after ``after_id`` (an interactions id, such as a
    model's ``store_watermark``), as a canonical frame in id order.

    One indexed query per 500 users (the ``user_id`` index); ids that cannot be stored
    (empty, too long, control characters) have no events and are skipped.
    """
    found = _events_since_or_none(engine, user_ids, after_id)
    return _empty() if found is None else found


def user_events_since(engine: Engine, user_id: str, after_id: int) -> pd.DataFrame | None:
    """One user's interactions stored after ``after_id`` (see :func:`events_since`);
    None when there are none, the common case when answering: no frame is built."""
    if id_problem(user_id) is not None:
        return None
    with engine.connect() as connection:
        return _user_events_on(connection, user_id, after_id)


@dataclass(frozen=True)
class UserRead:
    """What answering a user reads from the store: their attributes (empty when none),
    whether they were deleted, and their events after a given id (None: none)."""

    attributes: dict[str, Any]
    deleted: bool
    events: pd.DataFrame | None


def read_user_for_answer(engine: Engine, user_id: str, events_after: int) -> UserRead:
    """:func:`reco.store.entities.user_state` and :func:`user_events_since` in one
    connection and transaction (one read snapshot; ValidationError for an id that
    cannot be stored, as user_state)."""
    with engine.connect() as connection:
        attributes, deleted = user_state_on(connection, user_id)
        events = _user_events_on(connection, user_id, events_after)
    return UserRead(attributes, deleted, events)


def _user_events_on(connection: Connection, user_id: str, after_id: int) -> pd.DataFrame | None:
    rows = connection.execute(
        _USER_SINCE, {"user_id": str(user_id), "after_id": int(after_id)}
    ).all()
    return _stored_frame(rows) if rows else None


def _events_since_or_none(
    engine: Engine, user_ids: Sequence[str], after_id: int
) -> pd.DataFrame | None:
    wanted = list(dict.fromkeys(str(u) for u in user_ids if id_problem(u) is None))
    if not wanted:
        return None
    rows: list[Any] = []
    with engine.connect() as connection:
        for start in range(0, len(wanted), _USERS_PER_QUERY):
            chunk = wanted[start : start + _USERS_PER_QUERY]
            rows += connection.execute(_SINCE, {"user_ids": chunk, "after_id": int(after_id)}).all()
    if not rows:
        return None
    if len(wanted) > _USERS_PER_QUERY:
        rows.sort(key=lambda row: row[0])
    return _stored_frame(rows)


def _stored_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """The canonical frame of rows selected with ``_EVENT_COLUMNS``, in their order."""
    _ids, users, items, stamps, values, types, event_ids = zip(*rows, strict=True)
    missing = np.fromiter((s is None for s in stamps), dtype=bool, count=len(rows))
    return _canonical(
        list(users),
        list(items),
        np.array([0 if s is None else s for s in stamps], dtype=np.int64),
        missing,
        np.array([math.nan if v is None else v for v in values], dtype=np.float64),
        list(types),
        np.array(event_ids, dtype=object),
    )


def watermark(engine: Engine) -> int:
    """The largest interactions id in the store (0 when it holds none)."""
    with engine.connect() as connection:
        return read_watermark(connection)
