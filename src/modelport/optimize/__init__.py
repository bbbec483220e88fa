"""The measured recipe search (``--optimize latency|throughput``): for each target, candidate
recipes (INT8 forms, the peers' plain recipes, runtime settings) built and checked here, timed
in interleaved rounds on this machine, the fastest within the accuracy budget shipped.

``settings.py`` says what to optimize and within what time; ``candidates.py`` the candidate
shapes and which backend module proposes them (``ort.py``, ``ov.py``); ``search.py`` runs the
search; ``cache.py`` keeps its outcome per model and CPU kind; ``report.py`` prints it.
"""

from modelport.optimize.settings import OBJECTIVES, SearchSettings

__all__ = ["OBJECTIVES", "SearchSettings"]
