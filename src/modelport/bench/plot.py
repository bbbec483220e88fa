"""pareto.png: latency vs fidelity, one point per measured target, the Pareto front drawn.

matplotlib comes with the ``plot`` extra and is imported only here, when a plot is drawn;
a device install without it still writes report.json and report.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: fidelity keys in order of preference; the first one every plotted row has is used
METRICS = (("accuracy", "accuracy on the eval labels"),
           ("top1_agreement", "top-1 agreement with the reference"),
           ("cosine_mean", "mean cosine vs the reference"))
#: PNG text chunk holding the plotted points, so the image can be checked on its own
PNG_KEY = "modelport-points"


def plot_available() -> bool:
    from modelport.runtimes.base import has_module

    return has_module("matplotlib")


def pareto_points(report: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """One point per row with a latency and a fidelity; ``on_front`` marks the Pareto front
    (no other point of the same machine is both faster and at least as faithful)."""
    rows = [r for r in report["rows"] if r.get("p50_ms") and r.get("fidelity")]
    metric = next((key for key, _ in METRICS if rows and all(key in r["fidelity"] for r in rows)),
                  "cosine_mean")
    points = [{"machine": r["machine"], "target": r["target"], "latency_ms": r["p50_ms"],
               "fidelity": r["fidelity"].get(metric), "size_mb": r.get("size_mb"),
               "reference": bool(r.get("reference"))}
              for r in rows if r["fidelity"].get(metric) is not None]
    for machine in {p["machine"] for p in points}:
        best = float("-inf")
        mine = sorted((p for p in points if p["machine"] == machine),
                      key=lambda p: (p["latency_ms"], -p["fidelity"]))
        for p in mine:
            p["on_front"] = p["fidelity"] > best
            best = max(best, p["fidelity"])
    return points, metric


def plot_pareto(report: dict[str, Any], path: str | Path) -> tuple[list[dict[str, Any]], str]:
    """Draw the plot into ``path`` and return the points drawn and the fidelity metric used."""
    from matplotlib.figure import Figure

    points, metric = pareto_points(report)
    label = dict(METRICS)[metric]
    fig = Figure(figsize=(8.5, 5.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    machines = sorted({p["machine"] for p in points})
    sizes = [p["size_mb"] or 0.0 for p in points]
    biggest = max(sizes, default=0.0) or 1.0
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for m_index, machine in enumerate(machines):
        color = colors[m_index % len(colors)]
        mine = [p for p in points if p["machine"] == machine]
        ax.scatter([p["latency_ms"] for p in mine], [p["fidelity"] for p in mine],
                   s=[40 + 900 * (p["size_mb"] or 0.0) / biggest for p in mine],
                   c=color, alpha=0.55, edgecolors="black", linewidths=0.6,
                   label=machine if len(machines) > 1 else None)
        front = sorted((p for p in mine if p["on_front"]), key=lambda p: p["latency_ms"])
        if front:
            ax.step([p["latency_ms"] for p in front], [p["fidelity"] for p in front],
                    where="post", color=color, linestyle="--", linewidth=1.2, marker="x",
                    markersize=7, label=None)
        # labels alternate above/below so targets at similar speed stay readable
        for i, p in enumerate(sorted(mine, key=lambda p: p["latency_ms"])):
            ax.annotate(p["target"] + (" (ref)" if p["reference"] else ""),
                        (p["latency_ms"], p["fidelity"]), textcoords="offset points",
                        xytext=(8, (10, -14, 22, -26)[i % 4]), fontsize=8,
                        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
    lats = [p["latency_ms"] for p in points]
    if lats and max(lats) / max(min(lats), 1e-9) > 20:
        ax.set_xscale("log")
    batch = next((r.get("latency_batch") for r in report["rows"] if r.get("latency_batch")), None)
    ax.set_xlabel(f"p50 latency, ms (batch {batch})" if batch else "p50 latency, ms")
    ax.set_ylabel(label)
    ax.set_title(f"{report['model'].get('name')}: latency vs fidelity "
                 "(marker area = artifact size; dashed = Pareto front)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(machines) > 1:
        ax.legend(fontsize=8)
    summary = [{k: p[k] for k in ("machine", "target", "latency_ms", "fidelity")} for p in points]
    fig.savefig(path, format="png", metadata={
        "Software": "modelport", "Description": f"{len(points)} points: latency vs {metric}",
        PNG_KEY: json.dumps(summary)})
    return points, metric


def read_png_points(path: str | Path) -> list[dict[str, Any]]:
    """The points recorded in a pareto.png written by plot_pareto (its tEXt chunk)."""
    import struct
    import zlib

    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"{path}: corrupt {kind!r} chunk")
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            if key.decode("latin-1") == PNG_KEY:
                return json.loads(value.decode("latin-1"))
        pos += 12 + length
    raise ValueError(f"{path} has no {PNG_KEY} chunk")
