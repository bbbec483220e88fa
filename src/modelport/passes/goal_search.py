"""``modelport compress MODEL --goal speed=5x --keep 0.97 --target T --out DIR``: a search.

Candidates are encoder shapes: how many of the teacher's blocks stay (layer drop, chosen
greedily on the calibration data, once for every depth), which fraction of attention heads and
of FFN neurons every block loses (structured pruning: the tensors shrink). Each shape is
distilled from the teacher (output + hidden-state + attention-map losses), then quantized two
ways -- PTQ by ``--target``'s INT8 build and QAT timed as its own Q/DQ graph on that backend's
FP32 target -- and the variant that keeps more is the candidate's answer.

Order: the gentlest shape predicted to reach the speed goal first (predicted from FLOPs, the
latency per FLOP recalibrated after each measurement). A shape that misses speed rules out
the gentler ones; one that meets speed but misses ``--keep`` rules out the harsher ones. The
search stops at the first candidate that meets both, or when no shape is left, the candidate
budget or ``--max-time`` is spent, or on Ctrl-C; it then writes the best candidate found (the one
nearest to both goals) as a complete output folder, with every candidate in its report.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import UsageError
from modelport.passes.goal_measure import Timing

log = logging.getLogger("modelport")

HEAD_FRACTIONS = (0.0, 0.25, 0.5)
FFN_FRACTIONS = (0.0, 0.25, 0.5, 0.75)


def parse_goal(text: str) -> float:
    """``speed=5x`` (or ``speed=5``) -> 5.0."""
    m = re.fullmatch(r"\s*speed\s*=\s*([0-9]*\.?[0-9]+)\s*x?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--goal takes speed=Nx (e.g. speed=5x: N times the torch FP32 "
                         f"teacher at batch 1), got '{text}'")
    return float(m.group(1))


@dataclasses.dataclass
class SearchSettings:
    """Budget and training knobs of the search (defaults fit a small CPU: minutes a shape)."""

    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 32
    augment: int = 0
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    qat_epochs: int = 1
    qat_lr: float = 2e-5
    max_steps: int | None = None
    max_time: float | None = None
    max_candidates: int = 6
    seed: int = 0
    timing: Timing = dataclasses.field(default_factory=Timing)


@dataclasses.dataclass(frozen=True)
class Shape:
    layers: int
    heads: float
    ffn: float

    def label(self) -> str:
        return f"{self.layers} blocks, -{self.heads:.0%} heads, -{self.ffn:.0%} FFN"


@dataclasses.dataclass
class SearchState:
    """Everything measured so far; the output folder is written from this at any moment."""

    goal: float
    keep: float
    target: str
    metric: str
    teacher: dict[str, Any]
    data: dict[str, Any]
    candidates: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stopped: str = "running"
    started: float = dataclasses.field(default_factory=time.monotonic)

    def best(self) -> dict[str, Any] | None:
        """The student nearest to both goals (the teacher only while no student is measured)."""
        pool = [c for c in self.candidates if c.get("shape")] or self.candidates
        return min(pool, key=lambda c: (c["shortfall"], -c["speed"]), default=None)


class Search:
    """One search run: the teacher's references, then candidates until a stop condition."""

    def __init__(self, model: Any, *, speed: float, keep: float, target: str,
                 calib: Any = None, eval: Any = None, settings: SearchSettings | None = None,
                 progress: bool = True,
                 on_candidate: Callable[[dict[str, Any]], None] | None = None) -> None:
        from modelport.passes.goal_setup import prepare_search

        if not 0 < keep <= 1.5:
            raise UsageError(f"--keep is a fraction of the teacher's metric, e.g. 0.97; got {keep}")
        self.settings = settings or SearchSettings()
        self.progress = progress
        self.on_candidate = on_candidate
        self.deadline = (time.monotonic() + self.settings.max_time
                         if self.settings.max_time else None)
        self.env = prepare_search(model, target=target, calib=calib, eval=eval,
                                  settings=self.settings, progress=progress,
                                  should_stop=self.out_of_time)
        self.work = Path(tempfile.mkdtemp(prefix="modelport-search-"))
        self.state = SearchState(goal=speed, keep=keep, target=target, metric=self.env.metric,
                                 teacher=self.env.teacher_record, data=self.env.data_record)
        self.ruled_out: set[Shape] = set()
        self.per_flop: float | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def say(self, text: str) -> None:
        log.info("[compress search %s] %s", _clock(self.state.started), text)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> SearchState:
        try:
            self._loop()
        except KeyboardInterrupt:
            self.state.stopped = "interrupted (Ctrl-C)"
            raise
        finally:
            if self.state.stopped == "running":
                self.state.stopped = "error"
        return self.state

    def _loop(self) -> None:
        env, st = self.env, self.state
        self.say(f"teacher: {env.teacher_ms:.2f} ms at batch 1 in torch FP32; {st.metric} "
                 f"{env.teacher_value:.4f} on {st.data['validation_samples']} validation rows")
        self._record(self._measure_teacher())  # a reference: only a student ends the search
        if self.out_of_time():
            st.stopped = "--max-time reached"
            return
        tried: list[Shape] = []
        retrained = False
        while True:
            if len(st.candidates) >= self.settings.max_candidates:
                st.stopped = f"candidate budget ({self.settings.max_candidates}) spent"
                return
            shape = self._next_shape()
            epochs = self.settings.epochs
            if shape is None:
                last = next((c for c in reversed(st.candidates) if c.get("shape")), None)
                if retrained or last is None or not last["meets"]["speed"]:
                    st.stopped = "no shape left to try"
                    return
                retrained = True  # the fast-enough shape that kept too little, trained longer
                shape, epochs = Shape(**last["shape"]), 2 * self.settings.epochs
            tried.append(shape)
            for cand in self._candidate(shape, epochs):
                self._record(cand)
                if self._done():
                    return
            self._learn(shape)

    def _done(self) -> bool:
        st = self.state
        last = st.candidates[-1]
        if last["meets"]["speed"] and last["meets"]["keep"]:
            st.stopped = "goal met"
            return True
        if self.out_of_time():
            st.stopped = "--max-time reached"
            return True
        return False

    def _record(self, cand: dict[str, Any]) -> None:
        st = self.state
        cand["id"] = len(st.candidates)
        cand["speed"] = cand["teacher_ms"] / cand["latency_ms"]  # timed in alternation
        cand["keep"] = cand["metric"] / self.env.teacher_value if self.env.teacher_value else 0.0
        cand["meets"] = {"speed": cand["speed"] >= st.goal, "keep": cand["keep"] >= st.keep}
        cand["shortfall"] = (max(0.0, 1 - cand["speed"] / st.goal)
                             + max(0.0, 1 - cand["keep"] / st.keep))
        st.candidates.append(cand)
        self.say(f"candidate {cand['id']} [{cand['stage']}]: speed {cand['speed']:.2f}x "
                 f"(goal {st.goal:g}x), {st.metric} {cand['metric']:.4f} = keep "
                 f"{cand['keep']:.3f} (goal {st.keep:g})")
        if self.on_candidate is not None:
            self.on_candidate(cand)

    # -- choosing shapes ----------------------------------------------------------------------
    def _shapes(self) -> list[Shape]:
        n = self.env.blocks
        return [Shape(layers, h, r) for layers in range(n, 0, -1) for h in HEAD_FRACTIONS
                for r in FFN_FRACTIONS if (layers, h, r) != (n, 0.0, 0.0)
                and (h == 0.0 or self.env.heads_kept(h) < self.env.dims["heads"])]

    def _next_shape(self) -> Shape | None:
        env = self.env
        per_flop = self.per_flop or env.teacher_target_ms / env.flops_of(None)
        left = [s for s in self._shapes() if s not in self.ruled_out]
        fits = [s for s in left if env.teacher_ms / (per_flop * env.flops_of(s)) >= self.state.goal]
        if fits:
            return max(fits, key=lambda s: (env.flops_of(s), s.layers))
        # none predicted fast enough: the fastest one left shows how far the goal is
        return min(left, key=lambda s: (env.flops_of(s), -s.layers), default=None)

    def _learn(self, shape: Shape) -> None:
        """Rule shapes out by what the last candidate of ``shape`` showed; recalibrate ms/FLOP."""
        env = self.env
        mine = [c for c in self.state.candidates if c.get("shape") == dataclasses.asdict(shape)]
        fastest = min(mine, key=lambda c: c["latency_ms"])
        self.per_flop = fastest["latency_ms"] / env.flops_of(shape)
        f = env.flops_of(shape)
        self.ruled_out.add(shape)
        if not any(c["meets"]["speed"] for c in mine):
            self.ruled_out |= {s for s in self._shapes() if env.flops_of(s) >= f}
        elif not any(c["meets"]["keep"] for c in mine):
            self.ruled_out |= {s for s in self._shapes() if env.flops_of(s) <= f}

    # -- building and measuring ---------------------------------------------------------------
    def _measure_teacher(self) -> dict[str, Any]:
        env = self.env
        self.say(f"stage teacher: timing the unchanged model on {env.target}")
        start = time.perf_counter()
        folder = env.save(self.work / "cand-0-teacher", copy.deepcopy(env.teacher), [], [],
                          name="teacher")
        got = env.measure(folder, env.target, self.work)
        env.teacher_target_ms = got["latency_ms"] * env.teacher_ms / got["teacher_ms"]
        return {"stage": "teacher", "mode": env.quant_mode(env.target), "shape": None,
                "timed_on": env.target, "dir": str(folder), "params": env.params(env.teacher),
                "flops": env.flops_of(None), "seconds": time.perf_counter() - start, **got}

    def _candidate(self, shape: Shape, epochs: int):
        """Yield the candidate's variants as they are measured (PTQ first, then QAT)."""
        env = self.env
        idx = len(self.state.candidates)
        self.say(f"stage shape {shape.label()}: layer drop, pruning, distillation "
                 f"({epochs} epochs)")
        start = time.perf_counter()
        student, reports, structure, recipe_passes = env.build(shape, epochs)
        if self.out_of_time():
            self.say("time is up: measuring what the distillation reached")
        base = {"shape": dataclasses.asdict(shape), "epochs": epochs,
                "params": env.params(student), "flops": env.flops_of(shape, student),
                "passes": recipe_passes}
        folder = env.save(self.work / f"cand-{idx}", student, reports, structure,
                          name=f"search-{idx}", passes=recipe_passes)
        stage = "ptq" if env.quant_mode(env.target) == "ptq" else "fp32"
        self.say(f"stage {stage}: {shape.label()} on {env.target}")
        got = env.measure(folder, env.target, self.work)
        yield {**base, "stage": stage, "mode": stage, "timed_on": env.target, "dir": str(folder),
               "seconds": time.perf_counter() - start, **got}
        if stage != "ptq" or self.out_of_time():
            return
        start = time.perf_counter()
        self.say(f"stage qat: {shape.label()}, Q/DQ timed on {env.fp32_target}")
        qstudent, qreport, qrecord, qpass = env.quantize_aware(student)
        qfolder = env.save(self.work / f"cand-{idx}-qat", qstudent, reports + [qreport],
                           structure + [qrecord], name=f"search-{idx}-qat",
                           passes=recipe_passes + [qpass])
        got = env.measure(qfolder, env.fp32_target, self.work)
        yield {**base, "passes": recipe_passes + [qpass], "stage": "qat", "mode": "qat",
               "timed_on": env.fp32_target, "dir": str(qfolder),
               "seconds": time.perf_counter() - start, **got}

    def cleanup(self) -> None:
        if self.env.clock is not None:
            self.env.clock.close()
        shutil.rmtree(self.work, ignore_errors=True)


def search(model: Any, *, speed: float, keep: float, target: str, out: str | Path,
           force: bool = False, calib: Any = None, eval: Any = None,
           settings: SearchSettings | None = None, progress: bool = True,
           on_candidate: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the search and write the best candidate to ``out`` (atomically) with the report of
    every candidate. Ctrl-C (KeyboardInterrupt) and ``max_time`` still write the best so far;
    KeyboardInterrupt is raised again after the folder is in place. Returns the report."""
    from modelport.errors import BundleExists
    from modelport.passes.goal_report import write_output

    out = Path(out)
    if out.exists() and not force:
        raise BundleExists(f"'{out}' exists already: pass --force to replace it")
    run = Search(model, speed=speed, keep=keep, target=target, calib=calib, eval=eval,
                 settings=settings, progress=progress, on_candidate=on_candidate)
    try:
        state = run.run()
        return write_output(out, state, run.env, force=force)
    except KeyboardInterrupt:
        if run.state.candidates:
            with _ctrl_c_waits():
                write_output(out, run.state, run.env, force=force)
            log.warning("interrupted: wrote the best candidate so far to %s", out)
        raise
    finally:
        run.cleanup()


def _clock(started: float) -> str:
    s = int(time.monotonic() - started)
    return f"{s // 60:d}:{s % 60:02d}"


class _ctrl_c_waits:
    """A second Ctrl-C while the best-so-far folder is written waits for the rename."""

    def __enter__(self) -> None:
        import signal

        try:
            self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to hold
            self.previous = None

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
