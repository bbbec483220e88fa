"""How a target is judged: what the model's output is (its output kind), the budget verdict on
a target's row, and the name of the metric that judged it.

A classifier's logits are judged by the decisions they make: with labels by the accuracy drop,
without by top-1 agreement with the reference as well as cosine (a cosine of 0.996 can hide one
changed decision in nine). Embeddings and regression outputs are judged by cosine. What the
output is comes from, in order: ``--output-kind`` (``Budget.output_kind``), the model's own
declaration (a built-in, a Hugging Face task, a factory's output kind), else a guess: one
output of shape [batch, N] looks like logits, unless every reference row has unit L2 norm (an
embedding normalised by the model).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.bench import statuses
from modelport.errors import UsageError
from modelport.metrics import OUTPUT_KINDS, Budget, budget_misses, judged_by

if TYPE_CHECKING:
    from modelport.backends.base import Backend
    from modelport.models import PreparedModel
    from modelport.specs import Target

log = logging.getLogger("modelport")

#: the fidelity kinds an output kind may replace (a task's own metric or perplexity stays)
_PLAIN_KINDS = frozenset(OUTPUT_KINDS.values())
#: |L2 norm - 1| under which every reference row counts as unit norm
UNIT_NORM_ATOL = 1e-3


def apply_output_kind(model: PreparedModel, budget: Budget) -> None:
    """``--output-kind`` (``budget.output_kind``) sets what ``model``'s output is, before any
    work starts; a Hugging Face task keeps its own kind (say it with --task instead)."""
    kind = budget.output_kind
    if kind is None:
        return
    if "hf_task" in model.metadata or model.task not in _PLAIN_KINDS:
        raise UsageError(f"--output-kind applies to a model whose outputs modelport cannot name "
                         f"(file.py:factory, .pt2, .onnx, a built-in); '{model.source}' is "
                         f"judged by its task ({model.metadata.get('hf_task', model.task)}): "
                         "drop --output-kind (or choose the task with --task)")
    model.task, model.output_kind, model.task_from = OUTPUT_KINDS[kind], kind, "--output-kind"


def revisit_guess(model: PreparedModel, reference: dict[str, np.ndarray]) -> None:
    """A [batch, N] output guessed to be logits whose reference rows all have unit norm is an
    embedding: judged by cosine, not by top-1 agreement."""
    if model.task_from != "output shape" or model.task != "classification" or not reference:
        return
    if unit_norm_rows(next(iter(reference.values()))):
        model.task, model.output_kind, model.task_from = \
            "embedding", "embedding", "unit-norm reference rows"
        log.info("every reference output row has unit norm: judged as an embedding (cosine); "
                 "say --output-kind logits if these are a classifier's scores")


def unit_norm_rows(values: np.ndarray) -> bool:
    rows = np.asarray(values, dtype=np.float64)
    if rows.ndim < 2 or len(rows) == 0:
        return False
    norms = np.linalg.norm(rows.reshape(len(rows), -1), axis=1)
    return bool(np.all(np.abs(norms - 1.0) <= UNIT_NORM_ATOL))


def budget_verdict(row: dict[str, Any], target: Target, backend: Backend,
                   metrics: dict[str, Any], budget: Budget, allow_drop: bool, *,
                   checked_with: str | None = None) -> bool:
    """Record fidelity, the metric that judges it and the budget verdict on ``row``; False when
    no bundle may be written."""
    from modelport.metrics_lm import max_increase

    row["fidelity"] = metrics
    if "perplexity" in metrics:  # language models: the limit depends on the precision
        metrics.setdefault("max_perplexity_increase", max_increase(
            str(target.precision), budget.max_perplexity_increase))
        row["perplexity"] = metrics["perplexity"]
    row["judged_by"] = judged_by(metrics)
    misses = budget_misses(metrics, budget)
    if not misses:
        row["status"] = statuses.OK
        return True
    how = f" ({checked_with})" if checked_with else ""
    row["status"] = statuses.BELOW_BUDGET
    row["reason"] = f"misses its accuracy budget{how}: {'; '.join(misses)}"
    if allow_drop:
        return True
    row["failure"] = (f"{target} misses its accuracy budget{how}: {'; '.join(misses)}; no "
                      f"bundle written (keep it with --allow-accuracy-drop, or "
                      f"{backend.budget_hint})")
    log.warning(row["failure"])
    return False
