"""Keep NNCF's output off stdout, where the CLI prints its table and JSON."""

from __future__ import annotations

import logging

log = logging.getLogger("modelport")


def quiet(fn, *args, **kwargs):
    """NNCF logs every step and draws its progress bars on stdout, where the CLI prints its
    table: bars go to stderr when modelport shows progress (INFO, bars enabled), else nowhere."""
    import contextlib
    import os
    import sys

    from nncf.common.logging.logger import set_log_level

    set_log_level(logging.WARNING)
    show = log.getEffectiveLevel() <= logging.INFO and not os.environ.get("TQDM_DISABLE")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sys.stderr if show else devnull):
        return fn(*args, **kwargs)
