"""How the recipe search spends its timing: more rounds when --max-time leaves room, and the
other bench batch as a tie-breaker for recipes and runtime settings (``search._Run`` calls
both)."""

from __future__ import annotations

import math
from typing import Any

from modelport.optimize.settings import SearchSettings

#: more rounds than asked, when --max-time leaves room: at most this many times the rounds
SPARE_ROUNDS_FACTOR = 3
#: candidates this close to the best at the search's batch are a tie, decided at the other
#: batch: the spread of identical loads. Six compiles of one MiniLM INT8 IR, timed in one
#: interleaved run (3 x 16 rounds, Zen 5, idle), ran 6.60-7.18 ms at batch 1, and the same
#: compile kept its rank across repeats: a 2-4% lead at batch 1 can be the compile's luck
TIE_BAND = 0.05


def trade_wins(ratios: list[float], margin: float) -> bool:
    """``ratios``: a candidate's time over the incumbent's, per batch (the search's first).
    It wins when it is no more than TIE_BAND behind at any batch, ahead by ``margin`` at one,
    and ahead by ``margin`` over the batches together (the product of its ratios): 2% slower
    at batch 1 for 7% faster at 32 is a win, 4.9% slower for 2.1% faster is not."""
    return (all(r <= 1 + TIE_BAND for r in ratios) and any(r < 1 - margin for r in ratios)
            and math.prod(ratios) < 1 - margin)


#: a speed tie goes to the candidate whose outputs are closer to the reference by at least
#: this fraction of the incumbent's error (1 - mean cosine): on MiniLM INT8 NNCF's symmetric
#: activations (cos 0.9960) are 33% closer than the transformer preset (0.9940), and which of
#: the two timed faster moved from run to run with the luck of a compile
FIDELITY_GAIN = 0.25


def fidelity_tie_wins(ratios: list[float], margin: float, error: float | None,
                      base_error: float | None) -> bool:
    """A speed tie that is more faithful: within TIE_BAND at every batch, no more than
    ``margin`` behind over the batches together (the product of ``ratios``, the candidate's
    time over the incumbent's), and an ``error`` (1 - mean cosine to the reference) at most
    ``1 - FIDELITY_GAIN`` of the incumbent's ``base_error``. What timing cannot tell apart is
    decided by what the check measured exactly."""
    if error is None or base_error is None or not base_error > 0:
        return False
    return (all(r <= 1 + TIE_BAND for r in ratios) and math.prod(ratios) <= 1 + margin
            and error <= (1 - FIDELITY_GAIN) * base_error)


def fidelity_error(record: dict[str, Any]) -> float | None:
    """1 - the mean cosine to the reference in a candidate's record (top-1 disagreement where
    the check measured no cosine); None when it measured neither."""
    f = record.get("fidelity") or {}
    for key in ("cosine_mean", "top1_agreement"):
        if f.get(key) is not None:
            return max(0.0, 1.0 - float(f[key]))
    return None


def time_other_batch(run: Any, cands: list[Any], other: int, what: str) -> None:
    """Time ``cands`` at the ``other`` bench batch; the figures go to each record's
    ``other_batch``, the search's own figures stay the record's."""
    saved = {c.name: dict(c.record) for c in cands}
    run._time(cands, f"{what} at batch {other}", until=run.deadline, batch=other)
    for c in cands:
        figures = {k: c.record.get(k) for k in ("batch", "p50_ms", "throughput")}
        c.record = {**saved[c.name], "other_batch": figures}


def other_score(run: Any, cand: Any) -> float | None:
    """``run._score`` of ``cand``'s figures at the other batch (``time_other_batch``): lower
    is better."""
    other = cand.record.get("other_batch") or {}
    if run.settings.objective == "latency":
        return other.get("p50_ms")
    return 1.0 / other["throughput"] if other.get("throughput") else None


def spare_rounds(settings: SearchSettings, left: float, cands: int) -> int:
    """The rounds to time ``cands`` candidates with ``left`` seconds to go: the asked rounds,
    and more (up to SPARE_ROUNDS_FACTOR times) while a third of what is left pays for them. On
    a shared machine a burst of load moves one round; the median of more rounds is what keeps
    a 2% margin from choosing by noise (three rounds of 0.5 s chose a MiniLM recipe 1% slower
    than the default under load 3-6). The rest of the time stays for the later stages."""
    per_round = 1.5 * cands * settings.duration
    fit = int(left / 3 / per_round) if per_round > 0 else settings.rounds
    return max(settings.rounds, min(fit, SPARE_ROUNDS_FACTOR * settings.rounds))


def other_batch_best(run: Any, kept: list[Any], base: Any) -> Any | None:
    """No candidate beat ``base`` (the runtime defaults; in stage 1 the fastest recipe) by the
    margin at the search's batch: time the ones that tie with it there (within TIE_BAND) at the
    other batch the bench reports (32 for a latency search); the best that wins there
    (``trade_wins``: ahead by the margin there and over both batches together), else None. A
    candidate can be neutral for one request and decisive for a batch: the bf16 hint on MiniLM
    INT8 ran 1.6x at batch 1 alone but tied once static fast paths were chosen, and was still
    1.1x at 32; symmetric activations tied with the transformer preset at batch 1 and ran
    1.05-1.09x at 32 (in probes with a static [32, 128] compile and the bf16 hint)."""
    from modelport.optimize.static_stage import fast_path_batches

    batches = fast_path_batches(run.batch)
    limit = run._score(base)
    if len(batches) < 2 or limit is None or run._out_of_time():
        return None
    ties = [c for c in kept if c is not base and run._score(c) is not None
            and run._score(c) <= limit * (1 + TIE_BAND)]
    if not ties:
        return None
    other = batches[1]
    time_other_batch(run, [base, *ties], other, "ties")
    ref = other_score(run, base)
    if ref is None:
        return None

    def ratios(c: Any) -> list[float]:
        return [run._score(c) / limit, other_score(run, c) / ref]

    winners = [c for c in ties if other_score(run, c) is not None
               and trade_wins(ratios(c), run.settings.margin)]
    if not winners:
        return None
    best = min(winners, key=lambda c: math.prod(ratios(c)))
    at_search, at_other = ratios(best)
    best.record["why"] = (f"ties with '{base.name}' at batch {run.batch} "
                          f"({1 / at_search:.2f}x), {1 / at_other:.2f}x at batch {other}")
    return best
