"""A batch of store writes: committed together at its end, and what must wait for the commit
(deleting a checkpoint's file, telling callbacks) runs only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from firepbt import Store


def test_a_batch_is_invisible_to_readers_until_it_ends(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "r", {})
    reader = Store.open(tmp_path / "r")
    ran: list[str] = []
    with store.batch():
        store.set_meta("a", "1")
        store.set_meta("b", "2")
        store.after_commit(lambda: ran.append(reader.meta("b") or "unset"))
        assert reader.meta("a") is None and ran == []  # not committed, nothing run
    assert ran == ["2"]  # ran after the commit, which it could see
    assert reader.meta("a") == "1"
    store.close()
    reader.close()


def test_outside_a_batch_each_write_commits_and_actions_run_at_once(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "r", {})
    reader = Store.open(tmp_path / "r")
    ran: list[str | None] = []
    store.set_meta("a", "1")
    store.after_commit(lambda: ran.append(reader.meta("a")))
    assert ran == ["1"]
    store.close()
    reader.close()


def test_a_batch_ended_by_an_exception_keeps_the_writes_that_finished(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "r", {})
    ran: list[int] = []
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.set_meta("a", "1")
        store.after_commit(lambda: ran.append(1))
        with store._tx() as c:  # a write that fails halfway is undone alone
            c.execute("INSERT OR REPLACE INTO meta VALUES ('b', '2')")
            raise KeyboardInterrupt
    reader = Store.open(tmp_path / "r")
    assert reader.meta("a") == "1" and reader.meta("b") is None
    assert ran == [1]  # committed, so its action ran
    reader.close()
    store.close()


def test_batches_nest_into_the_outermost(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "r", {})
    reader = Store.open(tmp_path / "r")
    with store.batch():
        with store.batch():
            store.set_meta("a", "1")
        assert reader.meta("a") is None
    assert reader.meta("a") == "1"
    store.close()
    reader.close()


def test_a_batch_cut_short_by_an_interrupt_leaves_the_store_writable(tmp_path: Path) -> None:
    # Ctrl-C between a batch's BEGIN and its COMMIT (seen once under load: the next write
    # failed with "cannot start a transaction within a transaction")
    store = Store.create(tmp_path, {"x": 1})
    store._conn.execute("BEGIN IMMEDIATE")
    store._conn.execute("INSERT OR REPLACE INTO meta VALUES ('before', 'kept')")
    store.set_meta("status", "interrupted")  # the next write goes through
    store.close()
    reopened = Store.open(tmp_path)
    assert (reopened.meta("before"), reopened.meta("status")) == ("kept", "interrupted")
    reopened.close()
