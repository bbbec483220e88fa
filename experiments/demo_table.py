"""The README's headline table: runs `modelport demo` (the exact export `make demo` runs) and
writes its table into README.md between the demo-table markers, stamped with the command, the
commit and the machine.

    .venv/bin/python experiments/demo_table.py            # run the demo, rewrite the README block
    .venv/bin/python experiments/demo_table.py --no-write # print only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import README, update_doc_block
from stamp import ROOT, stamp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-write", action="store_true", help="print only; leave README.md alone")
    p.add_argument("--note", default="", help="a remark for the stamp line (e.g. 'shared machine')")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "modelport", "-q", "demo", "--out",
                               str(Path(tmp) / "minilm")], capture_output=True, text=True,
                              cwd=ROOT, check=False)
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stderr}")
    table = proc.stdout.replace(str(Path(tmp) / "minilm"), "bundles/minilm").strip()
    note = f" {args.note}." if args.note else ""
    block = "\n".join(["```", table, "```", "", f"(Written by {stamp()}.{note})"])
    print(block)
    if args.no_write:
        return
    print(f"wrote {update_doc_block(README, 'demo-table', block)}")


if __name__ == "__main__":
    main()
