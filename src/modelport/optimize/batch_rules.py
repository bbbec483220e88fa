"""How the recipe search spends its timing: more rounds when --max-time leaves room, and the
other bench batch as a tie-breaker for recipes and runtime settings (``search._Run`` calls
both)."""

from __future__ import annotations

from typing import Any

from modelport.optimize.settings import SearchSettings

#: more rounds than asked, when --max-time leaves room: at most this many times the rounds
SPARE_ROUNDS_FACTOR = 3


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
    margin at the search's batch: time the ones that tie with it there (within the margin) at
    the other batch the bench reports (32 for a latency search); the best that wins there by
    the margin, else None. A candidate can be neutral for one request and decisive for a
    batch: the bf16 hint on MiniLM INT8 ran 1.6x at batch 1 alone but tied once static fast
    paths were chosen, and was still 1.1x at 32; symmetric activations tied with the
    transformer preset at batch 1 and ran 1.05-1.09x at 32 (in probes with a static
    [32, 128] compile and the bf16 hint)."""
    from modelport.optimize.static_stage import fast_path_batches

    batches = fast_path_batches(run.batch)
    limit = run._score(base)
    if len(batches) < 2 or limit is None or run._out_of_time():
        return None
    ties = [c for c in kept if c is not base and run._score(c) is not None
            and run._score(c) <= limit * (1 + run.settings.margin)]
    if not ties:
        return None
    other = batches[1]
    saved = {c.name: dict(c.record) for c in [base, *ties]}
    run._time([base, *ties], f"ties at batch {other}", until=run.deadline,
              batch=other)
    figures = {c.name: {k: c.record.get(k) for k in ("batch", "p50_ms", "throughput")}
               for c in [base, *ties]}
    for c in [base, *ties]:  # the search's own figures stay the record's
        c.record = {**saved[c.name], "other_batch": figures[c.name]}
    score = (lambda c: c.record["other_batch"]["p50_ms"]) if run.settings.objective == \
        "latency" else (lambda c: 1.0 / c.record["other_batch"]["throughput"]
                        if c.record["other_batch"].get("throughput") else None)
    ref = score(base)
    winners = [c for c in ties if ref is not None and score(c) is not None
               and score(c) < ref * (1 - run.settings.margin)]
    if not winners:
        return None
    best = min(winners, key=score)
    best.record["why"] = (f"ties with '{base.name}' at batch {run.batch}, "
                          f"{ref / score(best):.2f}x at batch {other}")
    return best
