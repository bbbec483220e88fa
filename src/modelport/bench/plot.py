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
           ("cosine_mean", "mean cosine vs the reference"),
           ("keep", "fraction of the teacher's metric kept (validation slice)"))
#: PNG text chunk holding the plotted points, so the image can be checked on its own
PNG_KEY = "modelport-points"


def plot_available() -> bool:
    from modelport.backends.base import has_module

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
    """Draw the plot into ``path`` and return the points drawn and the fidelity metric used.

    Colour = target, marker shape = machine, marker area = artifact size. Mean cosine is shown
    as ``1 - cosine`` on a log axis (better is up): 0.9999 and 0.99 look alike on a linear
    axis, yet one is a faithful artifact and the other a doubtful one.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points, metric = pareto_points(report)
    loss = metric == "cosine_mean"
    floor = 1e-7

    def y(p: dict[str, Any]) -> float:
        return max(1.0 - p["fidelity"], floor) if loss else p["fidelity"]

    fig = Figure(figsize=(9.5, 5.4), dpi=110, layout="constrained")
    ax = fig.subplots()
    machines = sorted({p["machine"] for p in points})
    targets = list(dict.fromkeys(p["target"] for p in points))
    palette = [f"C{i}" for i in range(10)] + ["black", "gold", "teal", "navy", "olive"]
    color = {t: palette[i % len(palette)] for i, t in enumerate(targets)}
    shapes = ["o", "s", "^", "D", "v", "P", "X"]
    shape = {m: shapes[i % len(shapes)] for i, m in enumerate(machines)}
    biggest = max((p["size_mb"] or 0.0 for p in points), default=0.0) or 1.0
    for p in points:
        ax.scatter([p["latency_ms"]], [y(p)], s=40 + 900 * (p["size_mb"] or 0.0) / biggest,
                   c=color[p["target"]], marker=shape[p["machine"]], alpha=0.6,
                   edgecolors="black", linewidths=1.4 if p["reference"] else 0.6)
    for machine in machines:
        front = sorted((p for p in points if p["machine"] == machine and p["on_front"]),
                       key=lambda p: p["latency_ms"])
        if front:
            ax.step([p["latency_ms"] for p in front], [y(p) for p in front], where="post",
                    color="0.35", linestyle="--", linewidth=1.0)
    handles = [Line2D([], [], marker="o", linestyle="", markersize=8, color=color[t],
                      label=t + (" (reference)" if any(p["reference"] and p["target"] == t
                                                       for p in points) else ""))
               for t in targets]
    if len(machines) > 1:
        handles += [Line2D([], [], marker=shape[m], linestyle="", markersize=8, color="0.5",
                           label=f"machine: {m}") for m in machines]
    handles.append(Line2D([], [], color="0.35", linestyle="--", label="Pareto front"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    lats = [p["latency_ms"] for p in points]
    if lats and max(lats) / max(min(lats), 1e-9) > 20:
        ax.set_xscale("log")
    if loss:
        ax.set_yscale("log")
        ax.invert_yaxis()  # smaller loss = more faithful = higher
        ax.set_ylabel(f"1 - mean cosine vs the reference (log; floor {floor:g})")
    else:
        ax.set_ylabel(dict(METRICS)[metric])
    batch = next((r.get("latency_batch") for r in report["rows"] if r.get("latency_batch")), None)
    ax.set_xlabel(f"p50 latency, ms (batch {batch})" if batch else "p50 latency, ms")
    ax.set_title(f"{report['model'].get('name')}: latency vs fidelity "
                 "(up and left is better; marker area = artifact size)", fontsize=10)
    ax.grid(True, alpha=0.3)
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
