"""What the recipe search optimizes and how long it may take (``--optimize``, ``--max-time``)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.errors import UsageError

#: objective -> what is compared: p50 latency at batch 1, or samples/s at a larger batch
OBJECTIVES = ("latency", "throughput")
#: the batch a throughput search times (an artifact with a static batch times its own)
THROUGHPUT_BATCH = 32
#: ``--max-time`` when ``--optimize`` is given without it
DEFAULT_MAX_TIME = 600.0


@dataclass(frozen=True)
class SearchSettings:
    """``objective``: latency or throughput. ``max_time``: seconds for the whole search of one
    target (builds, checks and timing); when it runs out no new candidate starts and the best
    measured so far ships. ``rounds`` interleaved timing rounds of ``duration`` seconds per
    candidate each. ``cache``: reuse a finished search of the same model, target, budget and
    CPU kind (``$MODELPORT_SEARCH_CACHE``, else ``~/.cache/modelport/search``)."""

    objective: str = "latency"
    max_time: float = DEFAULT_MAX_TIME
    rounds: int = 3
    duration: float = 0.5
    cache: bool = True
    #: a non-default runtime setting (threads, streams, graph level) must beat the default by
    #: this fraction to be chosen: "measure, keep only what wins", not what wins by noise
    margin: float = 0.02
    #: a folder: build and check every candidate, write each one within budget there as a
    #: bundle and time none (``modelport sweep --optimize`` times them on its devices:
    #: ``sweep/search_task.py``); the default recipe is what the export itself ships
    candidates_out: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UsageError(f"--optimize takes {' or '.join(OBJECTIVES)}, got "
                             f"'{self.objective}'")
        if not self.max_time > 0:
            raise UsageError(f"--max-time must be positive, got {self.max_time}")
        if self.rounds < 1 or not self.duration > 0:
            raise UsageError("the search needs at least one round of a positive duration")

    @property
    def batch(self) -> int:
        return 1 if self.objective == "latency" else THROUGHPUT_BATCH
