"""Export helpers shared by test modules: a result even when a target misses its budget."""

from __future__ import annotations


def export_or_refusal(model, targets, out, **kwargs):
    """(ExportResult, None), or (the refused run's result, AccuracyBudgetExceeded): the rows of
    a refused export are what the budget tests assert on."""
    import modelport
    from modelport.errors import AccuracyBudgetExceeded

    try:
        return modelport.export(model, targets, out=out, bench=None, progress=False, **kwargs), None
    except AccuracyBudgetExceeded as exc:
        return exc.result, exc


def rows_by_target(result) -> dict[str, dict]:
    return {row["target"]: row for row in result.rows}
