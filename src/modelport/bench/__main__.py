"""`python -m modelport.bench BUNDLE ...`: the device-side benchmark, same as `modelport bench`."""

from __future__ import annotations

import sys

from modelport.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    quiet = [a for a in args if a in ("-q", "--quiet")]  # a global flag: it goes before 'bench'
    sys.exit(main([*quiet, "bench", *[a for a in args if a not in quiet]]))
