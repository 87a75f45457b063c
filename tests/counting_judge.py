"""A test judge (loaded with `--judge python:tests/counting_judge.py:CountingJudge,log=FILE`)
that appends the key of every item it scores to a log, so tests can prove that nothing is
scored twice across a kill and a resume. It sleeps a little per batch so a run can be
killed mid-way."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from judge.records import Item, Score


class CountingJudge:
    batch_size = 8

    def __init__(self, spec) -> None:
        self.name = spec.display_name
        self.fingerprint = "counting:v1"
        self.log = spec.options["log"]
        self.delay = float(spec.options.get("delay", "0.002"))

    def score_batch(self, items: Sequence[Item]) -> list[Score]:
        time.sleep(self.delay)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write("".join(item.key + "\n" for item in items))
            fh.flush()
            os.fsync(fh.fileno())
        return [Score(float(len(item.response) % 7), details={"n": len(item.response)}) for item in items]
