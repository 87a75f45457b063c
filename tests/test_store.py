"""The score store: round trips, errors not cached, and many processes opening one fresh store."""

from __future__ import annotations

import multiprocessing as mp

from judge.records import Score
from judge.store import ScoreStore


def test_round_trip_and_errors_are_not_cached(tmp_path):
    with ScoreStore(tmp_path / "s.sqlite") as db:
        db.put_many("fp", [("k1", Score(1.5, details={"a": 1})), ("k2", Score.failed("boom")), ("k3", Score(None, abstained=True))])
        got = db.get_many("fp", ["k1", "k2", "k3", "k1"])
        assert set(got) == {"k1", "k3"}  # the error is retried next time, the abstention is kept
        assert got["k1"].value == 1.5 and got["k1"].details == {"a": 1}
        assert got["k3"].abstained and got["k3"].value is None
        assert db.get_many("other-judge", ["k1"]) == {}


def _open_and_write(path: str, rank: int, barrier) -> None:
    barrier.wait(30)  # all processes open the fresh store at the same moment
    with ScoreStore(path) as db:
        db.put_many("fp", [(f"r{rank}-{i}", Score(float(i))) for i in range(50)])


def test_many_processes_open_one_fresh_store_at_once(tmp_path):
    """Ranks of a distributed run open one new store together; none may fail with "locked"."""
    ctx = mp.get_context("fork")
    for trial in range(10):
        path = str(tmp_path / f"shared-{trial}.sqlite")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_and_write, args=(path, r, barrier)) for r in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 4, f"trial {trial}"
        with ScoreStore(path) as db:
            assert db.count("fp") == 200
