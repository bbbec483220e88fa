"""The sweep table of docs/sweeps.md: a real sweep on a two-node Ray cluster on loopback.

Both nodes are raylets of this one machine inside a private network namespace (``unshare
--net``; needs root), told apart only by their ``device:NAME`` resources: the table shows the
sweep's mechanics (one build, a bench per device on its own node), not two kinds of hardware.
Writes the table into docs/sweeps.md between the sweep-table markers, stamped with the command, the
commit and the machine.

    .venv/bin/python experiments/sweep_table.py            # run, rewrite the docs/sweeps.md block
    .venv/bin/python experiments/sweep_table.py --no-write # print only
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stamp import ROOT, stamp
from tests.sweep.cluster import ADDRESS, LoopbackCluster, can_run

BEGIN, END = "<!-- sweep-table:begin -->", "<!-- sweep-table:end -->"
TARGETS = "onnxruntime:cpu:fp32,onnxruntime:cpu:int8,openvino:cpu:fp32"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/sweeps.md alone")
    p.add_argument("--model", default="builtin:digits-cnn")
    p.add_argument("--note", default="", help="a remark for the stamp line (e.g. 'shared machine')")
    args = p.parse_args()
    reason = can_run()
    if reason:
        sys.exit(f"cannot start a loopback cluster here: {reason}")
    cluster = LoopbackCluster(env={"TQDM_DISABLE": "1"})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cluster.start_head("alpha")
            cluster.start_nodes("beta")
            command = ["modelport", "sweep", args.model, "--targets", TARGETS,
                       "--devices", "alpha,beta", "--ray", ADDRESS, "--report", "reports/sweep"]
            done = cluster.run([sys.executable, "-m", "modelport.cli", "-q", *command[1:-1],
                                str(Path(tmp) / "sweep")], timeout=900)
        finally:
            cluster.stop()
        if done.returncode != 0:
            sys.exit(f"sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads((Path(tmp) / "sweep" / "report.json").read_text())
    nodes = {run["machine"]: run.get("ray_node_id") for run in report["runs"]}
    table = done.stdout.strip()
    note = f" {args.note}." if args.note else ""
    block = "\n".join([
        BEGIN, "```", "$ " + " ".join(command), table, "```", "",
        (f"(Two Ray nodes on this one machine, loopback only, in a private network namespace: "
         f"alpha = node {str(nodes.get('alpha'))[:8]} (the head, where the build ran), beta = "
         f"node {str(nodes.get('beta'))[:8]}. Written by {stamp()}.{note})"), END])
    print(block)
    if not args.no_write:
        page = ROOT / "docs" / "sweeps.md"
        text = page.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            sys.exit(f"docs/sweeps.md has no {BEGIN} ... {END} block to replace")
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text,
                      flags=re.DOTALL)
        page.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
