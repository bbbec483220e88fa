"""Run the real CLI with a fault injected at an exact point (used by the error catalog tests).

    python tests/support/fault_driver.py ACTION AT COUNT -- CLI ARGS...

AT is ``module:attr.path`` (a function looked up at call time); on its COUNT-th call ACTION
happens, then the original runs:
  signal:SIGINT | signal:SIGTERM   the process signals itself (a real signal, real handler)
  fsize:BYTES                      RLIMIT_FSIZE is set: later writes past BYTES fail (EFBIG)
  meet:DIR:N                       wait until N processes have reached this point (a race)
  audit:OUT                        from now on, before every rename/remove, OUT must hold a
                                   complete bundle; violations go to OUT.violations
  none                             nothing (a control run)
Nothing here mocks a runtime: the model, the runtimes and the file system are real.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time
from pathlib import Path


def _act(action: str) -> None:
    kind, _, arg = action.partition(":")
    if kind == "signal":
        os.kill(os.getpid(), getattr(signal, arg))
        time.sleep(0.5)  # the handler runs at the next bytecode; be sure it has
    elif kind == "fsize":
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), int(arg)))
    elif kind == "meet":
        folder, _, n = arg.rpartition(":")
        Path(folder, f"arrived-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(Path(folder).glob("arrived-*"))) < int(n):
            if time.monotonic() > deadline:
                raise SystemExit("meet: the other process never arrived")
            time.sleep(0.02)
    elif kind == "audit":
        out = Path(arg)
        log = Path(str(out) + ".violations")

        watched = ("os.rename", "os.replace", "shutil.rmtree", "os.remove", "ctypes.call_function")

        def hook(event: str, args: tuple) -> None:
            if event in watched and not (out / "manifest.json").is_file():
                with open(log, "a") as fh:
                    fh.write(f"{event}: {out} incomplete\n")

        sys.addaudithook(hook)
    elif kind != "none":
        raise SystemExit(f"unknown action {action}")


def _patch(at: str, count: int, action: str) -> None:
    module_name, _, attr = at.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == count:
            _act(action)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main() -> int:
    action, at, count, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: fault_driver.py ACTION AT COUNT -- CLI ARGS"
    _patch(at, int(count), action)
    from modelport.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
