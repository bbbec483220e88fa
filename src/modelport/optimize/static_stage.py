"""The recipe search's static-shape stage, run when the user fixed shapes (``--shape``) and the
backend can specialize to them (``Proposal.shapes``: ONNX Runtime, OpenVINO).

Every candidate of the search is timed at the fixed shapes (the shape the user said the bundle
runs). Between stage 1 (recipes, built with dynamic axes) and stage 2 (runtime settings), the
stage-1 winner's artifact is loaded static at the fixed shapes (ONNX Runtime's free-dimension
overrides, OpenVINO's reshape before compile: backends/static_shapes.py), checked against the
budget and timed against the same artifact loaded dynamic in interleaved rounds. It is chosen
only when it beats the dynamic load by the search's margin; stage 2's settings then apply on
top of the choice. Both rows are recorded (stage ``shape``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelport.optimize.candidates import Runtime


def stage(run: Any, winner: Any, share: float) -> list[Any]:
    """``run``: the search (``search._Run``); ``winner``: the stage-1 winner (a
    ``search.Candidate``), its session open; ``share`` of --max-time after which the static
    load is not tried. Returns the stage's candidates; when the static load wins, ``winner``
    carries its session and runtime (the shapes) from here on."""
    fixed = getattr(run.proposal, "shapes", None)
    if not fixed:
        return []
    from modelport.backends.static_shapes import as_setting

    name = f"{winner.name}, dynamic shapes"
    dynamic = replace(winner, name=name, stage="shape", record={
        **winner.record, "name": name, "stage": "shape", "runtime": winner.runtime.to_dict(),
        "chosen": False})
    rt = replace(winner.runtime, shapes=Runtime(shapes=as_setting(fixed)).shapes)
    name = f"{winner.name}, {rt.describe()}"
    static = replace(winner, name=name, stage="shape", runtime=rt, session=None, record={
        "name": name, "stage": "shape", "options": dict(winner.recipe.options),
        "runtime": rt.to_dict(), "kept": False, "chosen": False,
        **({"peer": winner.recipe.peer} if winner.recipe.peer else {})})
    if run._out_of_time(share):
        run._drop(static, f"not tried: --max-time ({run.settings.max_time:.0f} s) reached")
        dynamic.session = None
        return [dynamic, static]
    run._open(static)  # loaded static, checked against the budget
    if static.session is not None:
        run._time([dynamic, static], "static shapes",
                  until=run.start + share * run.settings.max_time)
    dynamic.session = None  # the winner's own session
    if static.session is not None and run._beats(static, dynamic):
        winner.session.close()
        winner.session, winner.runtime = static.session, static.runtime
        static.record["chosen"] = True
    else:
        if static.session is not None:
            static.session.close()
            static.record["why"] = (f"not {100 * run.settings.margin:.0f}% faster than the "
                                    "dynamic graph")
        dynamic.record["chosen"] = True
    static.session = None
    return [dynamic, static]
