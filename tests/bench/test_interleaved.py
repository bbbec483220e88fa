"""Interleaved rounds: odd rounds run the sessions in reverse order (no session always follows
the same neighbour), and every session gets one figure per round."""

import numpy as np
import torch

from modelport.backends.torch.backend import TorchSession
from modelport.bench.harness import BenchSettings
from modelport.bench.interleaved import time_interleaved
from modelport.specs import TensorSpec


class _Recorded:
    """A real torch session that notes its label in a shared list on every call."""

    def __init__(self, label: str, calls: list[str]) -> None:
        spec_in, spec_out = TensorSpec("input", "float32", ("batch", 4)), TensorSpec("y", "float32", ("batch", 2))
        self._session = TorchSession(torch.nn.Linear(4, 2), [spec_in], [spec_out])
        self._label, self._calls = label, calls

    def infer(self, feeds):
        self._calls.append(self._label)
        return self._session.infer(feeds)

    def synchronize(self) -> None:
        self._session.synchronize()


def test_odd_rounds_run_in_reverse_order():
    calls: list[str] = []
    sessions = {k: _Recorded(k, calls) for k in "abc"}
    pool = {"input": np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)}
    settings = BenchSettings(batch_sizes=(1,), warmup=1, iters=2)
    timed = time_interleaved(sessions, pool, settings, rounds=3)
    per_turn = settings.warmup + settings.iters  # calls of one session in one round
    order = "".join(calls[::per_turn])
    assert calls == [c for c in order for _ in range(per_turn)], calls
    assert order == "abc" + "cba" + "abc"
    assert all(t.rounds == 3 and t.p50_ms[1] > 0 for t in timed.values())
