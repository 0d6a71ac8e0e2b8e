"""Durable dialogue sessions: `SessionStore`, one SQLite file (WAL) with sessions, attachments, turns and memory.

    store = SessionStore(data_dir / "sessions.db")
    session = store.create(Session(...))                 # idempotent by request_id: a retry gets the same row
    store.append_turns(session_id, [user, reply], memory=[...], max_turns=200)   # one transaction per reply
    store.get(session_id, full=True); store.list("u1", 50, ""); store.delete(session_id)

Our choices:
- **WAL with `synchronous=FULL`.** WAL lets readers (GetSession, ListSessions) run beside a writer; FULL
  fsyncs the WAL at every commit, so a reply the client saw finish survives a power cut, not only a kill -9
  (NORMAL would already survive kill -9 but may lose the last commits on an OS crash). A commit happens once per
  reply, after seconds of generation, so the extra fsync costs nothing a user notices.
- **One transaction per completed (or cancelled) reply**: the user turn, the assistant turn, their attachments
  and the new memory vectors are written together or not at all, so a request that fails changes nothing and a
  kill -9 mid-reply leaves the session exactly as it was before the request.
- **One connection behind a lock** (`check_same_thread=False`): every call is short, writes are serialised by
  SQLite anyway, and one connection keeps the pragmas and the schema in one place. Thread-safe.
- **Foreign keys with ON DELETE CASCADE**: deleting a session deletes its attachments, turns and memory.
- **Page tokens** are opaque (URL-safe base64 of the last row's sequence number and the user filter); a token
  used with another `user_id` is a FieldError on `page_token` (AIP-158: other fields must match).
- Attachments keep every field; media bytes go in a BLOB beside the JSON of the rest.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generation.dialogue.types import (
    Attachment,
    AttachmentKind,
    Citation,
    FinishReason,
    Mode,
    Role,
    Session,
    SessionNotFound,
    Turn,
)
from libs.errors import FieldError

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    default_mode TEXT NOT NULL,
    topic TEXT NOT NULL,
    language TEXT NOT NULL,
    request_id TEXT NOT NULL,
    turn_count INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_request ON sessions(request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id, seq);
CREATE TABLE IF NOT EXISTS attachments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_session ON attachments(session_id, seq);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    create_time REAL NOT NULL,
    mode TEXT NOT NULL,
    citations TEXT NOT NULL,
    finish_reason TEXT,
    reasoning TEXT NOT NULL,
    request_id TEXT NOT NULL,
    UNIQUE (session_id, turn_id)
);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, seq);
CREATE INDEX IF NOT EXISTS turns_request ON turns(session_id, request_id) WHERE request_id != '';
CREATE TABLE IF NOT EXISTS memory (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    memory_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_session ON memory(session_id, seq);
"""


@dataclass(frozen=True)
class MemoryRow:
    """One entry of a session's memory: the embedding of a turn (float32) and its summary."""

    memory_id: str
    turn_id: str
    summary: str
    vector: np.ndarray


class SessionStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)  # every statement is IF NOT EXISTS: reopening changes nothing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; callers hold nothing else."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- sessions --------------------------------------------------------------------------------------------

    def create(self, session: Session) -> Session:
        """Store a new session with its attachments; when `session.request_id` is already stored, the session
        created then (AIP-155), unchanged."""
        with self._transaction() as db:
            if session.request_id:
                row = db.execute(
                    "SELECT session_id FROM sessions WHERE request_id = ?", (session.request_id,)
                ).fetchone()
                if row is not None:
                    return self._get(row[0], full=False)
            db.execute(
                "INSERT INTO sessions (session_id, user_id, create_time, update_time, default_mode, topic, "
                "language, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session.session_id, session.user_id, session.create_time, session.update_time,
                 session.default_mode.value, session.topic, session.language, session.request_id),
            )  # fmt: skip
            self._insert_attachments(db, session.session_id, "", session.attachments)
            return self._get(session.session_id, full=False)

    def get(self, session_id: str, *, full: bool = False) -> Session:
        """The session (with every turn when `full`); SessionNotFound when there is none."""
        with self._lock:
            return self._get(session_id, full)

    def list(self, user_id: str, page_size: int, page_token: str) -> tuple[list[Session], str]:
        """Sessions of `user_id` (every user's when empty), newest first, `page_size` at a time."""
        after = _read_token(page_token, user_id)
        with self._lock:
            query = "SELECT session_id, seq FROM sessions WHERE seq < ?"
            args: list[object] = [after]
            if user_id:
                query += " AND user_id = ?"
                args.append(user_id)
            rows = self._db.execute(query + " ORDER BY seq DESC LIMIT ?", (*args, page_size + 1)).fetchall()
            sessions = [self._get(session_id, full=False) for session_id, _ in rows[:page_size]]
        token = _write_token(rows[page_size - 1][1], user_id) if len(rows) > page_size else ""
        return sessions, token

    def delete(self, session_id: str) -> None:
        with self._transaction() as db:
            if db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,)).rowcount == 0:
                raise SessionNotFound(session_id)

    def attach(
        self, session_id: str, attachments: Sequence[Attachment], *, max_attachments: int | None = None
    ) -> Session:
        """Add attachments to the whole session (all or none); past `max_attachments` a FieldError."""
        with self._transaction() as db:
            self._require(db, session_id)
            if max_attachments is not None:
                (held,) = db.execute(
                    "SELECT COUNT(*) FROM attachments WHERE session_id = ? AND turn_id = ''", (session_id,)
                ).fetchone()
                if held + len(attachments) > max_attachments:
                    raise FieldError(
                        "attachments",
                        f"the session holds {held} attachments; {len(attachments)} more is over the limit of "
                        f"{max_attachments}",
                    )
            self._insert_attachments(db, session_id, "", attachments)
            return self._get(session_id, full=False)

    # -- turns and memory -------------------------------------------------------------------------------------

    def append_turns(
        self,
        session_id: str,
        turns: Sequence[Turn],
        *,
        memory: Sequence[MemoryRow] = (),
        max_turns: int | None = None,
        topic: str | None = None,
    ) -> Session:
        """Add a user turn and its reply (and their memory entries) in one transaction; nothing is written when
        the session is gone (SessionNotFound) or would hold more than `max_turns` turns (FieldError on
        `session_id`). `topic` sets the session's topic when it has none yet (taken from its first turn)."""
        with self._transaction() as db:
            count = self._require(db, session_id)
            if max_turns is not None and count + len(turns) > max_turns:
                raise too_many_turns(count, max_turns)
            for turn in turns:
                db.execute(
                    "INSERT INTO turns (session_id, turn_id, role, text, create_time, mode, citations, "
                    "finish_reason, reasoning, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, turn.turn_id, turn.role.value, turn.text, turn.create_time, turn.mode.value,
                     json.dumps([dataclasses.asdict(c) for c in turn.citations], ensure_ascii=False),
                     turn.finish_reason.value if turn.finish_reason else None, turn.reasoning,
                     turn.request_id),
                )  # fmt: skip
                self._insert_attachments(db, session_id, turn.turn_id, turn.attachments)
            for row in memory:
                db.execute(
                    "INSERT INTO memory (session_id, memory_id, turn_id, summary, vector) VALUES (?, ?, ?, ?, ?)",
                    (session_id, row.memory_id, row.turn_id, row.summary,
                     np.asarray(row.vector, dtype="<f4").tobytes()),
                )  # fmt: skip
            update_time = max((t.create_time for t in turns), default=0.0)
            db.execute(
                "UPDATE sessions SET turn_count = turn_count + ?, update_time = MAX(update_time, ?) "
                "WHERE session_id = ?",
                (len(turns), update_time, session_id),
            )
            if topic:
                db.execute(
                    "UPDATE sessions SET topic = ? WHERE session_id = ? AND topic = ''", (topic, session_id)
                )
            return self._get(session_id, full=False)

    def find_reply(self, session_id: str, request_id: str) -> tuple[Turn, Turn] | None:
        """(user turn, reply) stored for `request_id` in the session, if a request with it completed."""
        with self._lock:
            self._require(self._db, session_id)
            rows = self._db.execute(
                "SELECT * FROM turns WHERE session_id = ? AND request_id = ? ORDER BY seq",
                (session_id, request_id),
            ).fetchall()
            turns = [self._turn(session_id, row) for row in rows]
        user = next((t for t in turns if t.role is Role.USER), None)
        reply = next((t for t in turns if t.role is Role.ASSISTANT), None)
        return (user, reply) if user is not None and reply is not None else None

    def memory(self, session_id: str, limit: int) -> list[MemoryRow]:
        """The session's newest `limit` memory entries, oldest first (the order a FIFO memory is filled in)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT memory_id, turn_id, summary, vector FROM memory WHERE session_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        return [
            MemoryRow(memory_id, turn_id, summary, np.frombuffer(vector, dtype="<f4").copy())
            for memory_id, turn_id, summary, vector in reversed(rows)
        ]

    def counts(self) -> dict[str, int]:
        """Rows per table (reliability checks: nothing lost, nothing duplicated)."""
        with self._lock:
            return {
                table: self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("sessions", "attachments", "turns", "memory")
            }

    # -- rows <-> domain ------------------------------------------------------------------------------------

    def _require(self, db: sqlite3.Connection, session_id: str) -> int:
        """The session's turn count; SessionNotFound when there is no such session."""
        row = db.execute("SELECT turn_count FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        return row[0]

    def _get(self, session_id: str, full: bool) -> Session:
        db = self._db
        row = db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        turns: tuple[Turn, ...] = ()
        if full:
            rows = db.execute("SELECT * FROM turns WHERE session_id = ? ORDER BY seq", (session_id,))
            turns = tuple(self._turn(session_id, r) for r in rows.fetchall())
        return Session(
            session_id=row["session_id"],
            user_id=row["user_id"],
            create_time=row["create_time"],
            update_time=row["update_time"],
            default_mode=Mode(row["default_mode"]),
            topic=row["topic"],
            language=row["language"],
            attachments=self._attachments(session_id, ""),
            turns=turns,
            turn_count=row["turn_count"],
            request_id=row["request_id"],
        )

    def _turn(self, session_id: str, row: sqlite3.Row) -> Turn:
        return Turn(
            turn_id=row["turn_id"],
            role=Role(row["role"]),
            text=row["text"],
            create_time=row["create_time"],
            mode=Mode(row["mode"]),
            attachments=self._attachments(session_id, row["turn_id"]),
            citations=tuple(Citation(**c) for c in json.loads(row["citations"])),
            finish_reason=FinishReason(row["finish_reason"]) if row["finish_reason"] else None,
            reasoning=row["reasoning"],
            request_id=row["request_id"],
        )

    def _attachments(self, session_id: str, turn_id: str) -> tuple[Attachment, ...]:
        rows = self._db.execute(
            "SELECT fields, data FROM attachments WHERE session_id = ? AND turn_id = ? ORDER BY seq",
            (session_id, turn_id),
        ).fetchall()
        out = []
        for row in rows:
            values = json.loads(row[0])
            values["kind"] = AttachmentKind(values["kind"])
            values["comments"] = tuple(values["comments"])
            out.append(Attachment(**values, data=bytes(row[1])))
        return tuple(out)

    @staticmethod
    def _insert_attachments(
        db: sqlite3.Connection, session_id: str, turn_id: str, attachments: Sequence[Attachment]
    ) -> None:
        for attachment in attachments:
            values = dataclasses.asdict(attachment)
            data = values.pop("data")
            values["kind"] = attachment.kind.value
            db.execute(
                "INSERT INTO attachments (session_id, turn_id, fields, data) VALUES (?, ?, ?, ?)",
                (session_id, turn_id, json.dumps(values, ensure_ascii=False), data),
            )


def too_many_turns(count: int, max_turns: int) -> FieldError:
    return FieldError(
        "session_id",
        f"the session holds {count} turns, the limit is {max_turns}: start a new session",
        code="TOO_MANY_TURNS",
    )


def _write_token(seq: int, user_id: str) -> str:
    raw = json.dumps({"before": seq, "user": user_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_token(token: str, user_id: str) -> int:
    """The sequence number a page starts below (past every row for an empty token)."""
    if not token:
        return 2**62
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
        before, user = int(values["before"]), str(values["user"])
    except (ValueError, KeyError, TypeError):
        raise FieldError("page_token", "not a token this server returned") from None
    if user != user_id:
        raise FieldError("page_token", "was returned for another user_id: keep the fields of the first call")
    return before
