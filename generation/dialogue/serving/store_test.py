"""SessionStore: round trips of every field, idempotent creates, pages newest first, cascading deletes, one
transaction per reply (all or nothing), durability across a reopen, and WAL mode."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from generation.dialogue.serving.store import MemoryRow, SessionStore
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


def session(i: int, user: str = "u1", request_id: str = "", **fields) -> Session:
    return Session(
        f"s{i}", user, create_time=100.0 + i, update_time=100.0 + i, request_id=request_id, **fields
    )


DOC = Attachment(
    "doc1", AttachmentKind.DOCUMENT, title="X200", text="battery: 5000 mAh", comments=("好", "nice")
)
CLIP = Attachment(
    "clip1", AttachmentKind.VIDEO, data=b"\x00\x01mp4", mime_type="video/mp4", start=1.5, end=3.0
)


def exchange(n: int, request_id: str = "") -> list[Turn]:
    return [
        Turn(f"u{n}", Role.USER, f"question {n} 你好", 200.0 + n, attachments=(CLIP,), request_id=request_id),
        Turn(f"a{n}", Role.ASSISTANT, f"answer {n}", 200.5 + n, mode=Mode.KNOWLEDGE_QA,
             citations=(Citation("doc1", "X200", "battery: 5000 mAh", start=1.0, end=None),),
             finish_reason=FinishReason.STOP, reasoning="because", request_id=request_id),
    ]  # fmt: skip


def test_every_field_round_trips_and_survives_a_reopen(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    created = store.create(session(1, topic="the X200 phone", language="zh", attachments=(DOC,),
                                   default_mode=Mode.KNOWLEDGE_QA))  # fmt: skip
    assert created.attachments == (DOC,) and created.topic == "the X200 phone"
    memory = [MemoryRow("m1", "u1", "question 1", np.arange(4, dtype=np.float32))]
    store.append_turns("s1", exchange(1, "r1"), memory=memory)
    store.close()

    reopened = SessionStore(tmp_path / "sessions.db")
    full = reopened.get("s1", full=True)
    assert full.turns == tuple(exchange(1, "r1")) and full.turn_count == 2
    assert full.update_time == 201.5 and full.default_mode is Mode.KNOWLEDGE_QA and full.language == "zh"
    assert reopened.get("s1").turns == ()  # basic view
    (row,) = reopened.memory("s1", 16)
    assert row.memory_id == "m1" and np.array_equal(row.vector, np.arange(4, dtype=np.float32))
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_create_is_idempotent_by_request_id(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    first = store.create(session(1, request_id="req-a"))
    again = store.create(session(2, request_id="req-a", topic="other"))
    assert again.session_id == first.session_id == "s1" and again.topic == ""
    store.create(session(3))
    store.create(session(4))  # empty request ids never collide
    assert store.counts()["sessions"] == 3


def test_list_is_newest_first_in_pages_and_filters_by_user(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    for i in range(7):
        store.create(session(i, user="u1" if i % 2 == 0 else "u2"))
    seen, token = [], ""
    while True:
        page, token = store.list("u1", 3, token)
        seen += [s.session_id for s in page]
        if not token:
            break
    assert seen == ["s6", "s4", "s2", "s0"]
    everyone, token = store.list("", 50, "")
    assert [s.session_id for s in everyone] == [f"s{i}" for i in reversed(range(7))] and token == ""
    _, token = store.list("u1", 1, "")
    with pytest.raises(FieldError) as error:
        store.list("u2", 1, token)
    assert error.value.field == "page_token"
    with pytest.raises(FieldError):
        store.list("u1", 1, "not-a-token!")


def test_delete_cascades_and_unknown_ids_are_not_found(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    store.create(session(1, attachments=(DOC,)))
    store.append_turns("s1", exchange(1), memory=[MemoryRow("m", "u1", "", np.ones(3, np.float32))])
    store.delete("s1")
    assert store.counts() == {"sessions": 0, "attachments": 0, "turns": 0, "memory": 0}
    for call in (lambda: store.get("s1"), lambda: store.delete("s1"), lambda: store.append_turns("s1", [])):
        with pytest.raises(SessionNotFound):
            call()


def test_a_reply_is_written_whole_or_not_at_all(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    store.create(session(1))
    store.append_turns("s1", exchange(1), max_turns=4)
    before = store.get("s1", full=True)
    with pytest.raises(FieldError) as error:
        store.append_turns("s1", exchange(2) + exchange(3), max_turns=4)
    assert error.value.field == "session_id"
    duplicate = exchange(2)[:1] + [exchange(1)[1]]  # the reply's turn id is taken: the insert fails midway
    with pytest.raises(sqlite3.IntegrityError):
        store.append_turns("s1", duplicate)
    assert store.get("s1", full=True) == before and store.counts()["attachments"] == 1


def test_find_reply_returns_the_stored_exchange(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    store.create(session(1))
    store.append_turns("s1", exchange(1, "r1"))
    store.append_turns("s1", exchange(2, "r2"))
    user, reply = store.find_reply("s1", "r2")
    assert (user.turn_id, reply.turn_id) == ("u2", "a2")
    assert store.find_reply("s1", "r3") is None


def test_attach_respects_the_limit_and_concurrent_appends_all_land(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    store.create(session(1, attachments=(DOC,)))
    assert store.attach("s1", [CLIP], max_attachments=2).attachments == (DOC, CLIP)
    with pytest.raises(FieldError):
        store.attach("s1", [CLIP], max_attachments=2)

    def worker(k: int) -> None:
        for n in range(5):
            store.append_turns("s1", exchange(100 * k + n))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("s1").turn_count == 40 == len(store.get("s1", full=True).turns)
