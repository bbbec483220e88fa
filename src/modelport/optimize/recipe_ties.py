"""The stage-1 recipes that tied with the winner, judged again with the runtime settings the
search chose for it (``search._Run.go`` calls ``rejudge`` last).

Stage 1 times every recipe with the backend's runtime defaults, so two recipes that tie there
may not tie once the winner's settings apply: on MiniLM INT8 (Zen 5) NNCF's symmetric
activations tied with the transformer preset dynamic with the f32 hint at batch 1 and 32, and
ran 1.05-1.09x the preset at batch 32 with the bf16 hint and a static [32, 128] compile, the
settings the search then shipped. A recipe whose stage-1 score is within
``batch_rules.TIE_BAND`` of the winner's is loaded with the chosen settings (fast paths
included), checked against the budget, and timed against the winner with them at the search's
batch and the other bench batch; it replaces the winner when it wins the trade
(``batch_rules.trade_wins``: within the band at both, ahead by the margin at one and over both
together), or, where none does, when it ties on speed and its outputs are closer to the
reference (``batch_rules.fidelity_tie_wins``): a tie within the spread of a compile's luck is
decided by the fidelity the check measured exactly, not by which compile was lucky.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("modelport")

#: the tail of the names of the rows this stage adds
NOTE = "re-judged with the chosen runtime settings"
#: at most this many tied recipes are judged again (the fastest in stage 1 first)
MAX_TIES = 2


def rejudge(run: Any, recipes: list[Any], winner: Any, final: Any) -> tuple[Any, list[Any]]:
    """``run``: the search (``search._Run``); ``recipes``: stage 1's candidates; ``winner``:
    the stage-1 winner; ``final``: the candidate whose session and runtime ship (stage 2's
    choice, or the winner itself), its session open. Returns (the recipe that ships, the rows
    this stage recorded); the recipe is ``winner`` unless a tie beat it."""
    from modelport.optimize.batch_rules import time_other_batch
    from modelport.optimize.candidates import Runtime
    from modelport.optimize.static_stage import fast_path_batches

    runtime = final.runtime
    if runtime == Runtime() or final.session is None or run._out_of_time():
        return winner, []  # stage 1's own conditions: its verdict stands
    ties = _ties(run, recipes, winner)
    if not ties:
        return winner, []
    label = runtime.describe()
    base = _row(winner, runtime, final.session, label)
    base.record.update({k: v for k, v in final.record.items()
                        if k in ("fidelity", "judged_by", "inference_precision")}, kept=True)
    rows, kept = [base], [base]
    for tie in ties:
        cand = _row(tie, runtime, None, label)
        rows.append(cand)
        if run._out_of_time():
            run._drop(cand, f"not tried: --max-time ({run.settings.max_time:.0f} s) reached")
            continue
        log.info("%s: recipe '%s' judged again with %s", run.target, tie.name, label)
        run._open(cand)
        why = _fast_paths_differ(run, cand) if cand.session is not None else None
        if why:
            cand.session.close()
            cand.session = None
            run._drop(cand, why)
        if cand.session is not None:
            kept.append(cand)
    if len(kept) > 1:
        batches = fast_path_batches(run.batch)
        run._time(kept, f"tied recipes with {label}", until=run.deadline)
        if len(batches) > 1 and not run._out_of_time():
            time_other_batch(run, kept, batches[1], "tied recipes")
    best = _decide(run, base, kept[1:])
    for cand in kept[1:]:
        cand.session.close()
        cand.session = None
    base.session = None  # final's own session: closed by the caller
    if best is None:
        base.record["chosen"] = True
        return winner, rows
    best.record["chosen"] = True
    return next(c for c in recipes if c.recipe is best.recipe), rows


def _row(cand: Any, runtime: Any, session: Any, label: str) -> Any:
    """A row of this stage (``tie``): the artifact of ``cand`` (a stage-1 candidate) with
    ``runtime``."""
    from modelport.optimize.static_stage import stage_row

    return stage_row(cand, f"{cand.name}, {label}, {NOTE}", "tie", runtime, session)


def _ties(run: Any, recipes: list[Any], winner: Any) -> list[Any]:
    """Recipes within budget whose stage-1 score is within TIE_BAND of the winner's."""
    from modelport.optimize.batch_rules import TIE_BAND

    limit = run._score(winner)
    if limit is None:
        return []
    ties = [c for c in recipes if c is not winner and c.artifact is not None
            and c.recipe.same_as is None and c.record.get("kept")
            and run._score(c) is not None and run._score(c) <= limit * (1 + TIE_BAND)]
    return sorted(ties, key=run._score)[:MAX_TIES]


def _fast_paths_differ(run: Any, cand: Any) -> str | None:
    """The budget check runs the evaluation batches, which may miss a fast path's shape: each
    of ``cand``'s fast paths against its own dynamic model (same recipe and hint), or the
    budget at its shape (``static_stage.check_fast_path``)."""
    from dataclasses import replace

    from modelport.optimize.static_stage import check_fast_path

    paths = cand.runtime.fast_paths()
    if not paths:
        return None
    dynamic = run._load(cand.artifact, replace(cand.runtime, specialize=None,
                                               fast_path_precision=None))
    try:
        for shape, hint in paths:
            why = check_fast_path(run, cand, dynamic, shape, hint)
            if why:
                return why
    finally:
        dynamic.close()
    return None


def _decide(run: Any, base: Any, ties: list[Any]) -> Any | None:
    """The tie whose ratios to ``base`` win the trade (``batch_rules.trade_wins``: within
    TIE_BAND at every timed batch, ahead by the margin at one and over all together), the best
    product of them first; else the most faithful tie that still ties on speed
    (``batch_rules.fidelity_tie_wins``); else None."""
    import math

    from modelport.optimize.batch_rules import (
        fidelity_error,
        fidelity_tie_wins,
        other_score,
        trade_wins,
    )

    def scores(c: Any) -> list[float | None]:
        return [run._score(c)] + ([other_score(run, c)] if "other_batch" in c.record else [])

    ref = scores(base)
    if any(s is None for s in ref):
        return None
    best, best_product = None, 1.0
    ratios: dict[str, list[float]] = {}  # tie name -> its times over the winner's, per batch
    for c in ties:
        mine = scores(c)
        if len(mine) != len(ref) or any(s is None for s in mine):
            continue
        ratios[c.name] = [m / r for m, r in zip(mine, ref)]
        c.record["ratios_to_winner"] = [round(r, 4) for r in ratios[c.name]]
        if trade_wins(ratios[c.name], run.settings.margin) \
                and math.prod(ratios[c.name]) < best_product:
            best, best_product = c, math.prod(ratios[c.name])
    batches = [base.record.get("batch")] + ([base.record["other_batch"]["batch"]]
                                            if "other_batch" in base.record else [])

    def at_batches(c: Any) -> str:
        return ", ".join(f"{1 / r:.2f}x at batch {b}" for r, b in zip(ratios[c.name], batches))

    if best is not None:
        best.record["why"] = (f"tied with '{base.recipe.name}' in stage 1; with the chosen "
                              f"settings {at_batches(best)}")
        return best
    base_error = fidelity_error(base.record)
    faithful = [c for c in ties if c.name in ratios and fidelity_tie_wins(
        ratios[c.name], run.settings.margin, fidelity_error(c.record), base_error)]
    if not faithful:
        return None
    best = min(faithful, key=lambda c: fidelity_error(c.record))
    best.record["why"] = (f"ties with '{base.recipe.name}' on speed with the chosen settings "
                          f"({at_batches(best)}), and its outputs are closer to the reference "
                          f"(error {fidelity_error(best.record):.4f} against {base_error:.4f}, "
                          "1 - mean cosine)")
    return best
