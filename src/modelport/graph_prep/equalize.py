"""Cross-layer equalization of consecutive Conv pairs (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction").

For ``Conv1 -> f -> Conv2`` with f positively homogeneous (ReLU, LeakyReLU, MaxPool,
Identity or nothing), f(x / s) = f(x) / s for s > 0: dividing Conv1's output channel i by s_i
and multiplying Conv2's weights that read channel i by s_i keeps the float function. With
s_i = sqrt(r1_i / r2_i) (r1_i, r2_i: the largest |weight| of channel i in each layer) both
ranges become sqrt(r1_i * r2_i): per-channel weights no longer waste levels on channels a
hundred times smaller than their neighbours (depthwise layers after BatchNorm folding), and the
per-tensor activation between the layers loses its outlier channels. Depthwise layers pair the
same way (a depthwise Conv2 reads channel i with its own filter i).

ReLU6 (``Clip(x, 0, 6)``) is not homogeneous: clip(x / s, 0, 6) differs from clip(x, 0, 6) / s
wherever a clip bound is reached, and ONNX Clip takes scalar bounds only. ``relu6="keep"``
(the default) keeps the Clip and leaves such a pair alone. Equalizing only the channels whose
calibrated pre-activation stayed well below 6 was tried and dropped: exact on the calibration
crops, it was not on other photos (EfficientNet-Lite0, channels kept 2x below the bound on
calibration data: FP32 cosine 0.993 and top-1 agreement 97% on held-apart photos), because
new images reach values calibration never saw. ``relu6="relu"`` replaces those Clips by ReLU
(as the paper does for MobileNetV2) and equalizes every channel; the float function changes
wherever the clip fired, and the recipe records by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.graph_prep import run
from modelport.graph_prep.graph import GraphView, attr, conv_weight, ensure_bias

#: ops between the two Convs that commute with a positive per-channel scale
HOMOGENEOUS = {"Relu", "LeakyRelu", "Identity", "MaxPool"}
RELU6_CHOICES = ("keep", "relu")
ROUNDS = 20
#: a scale this close to 1 in every channel of every pair ends the iteration
CONVERGED = 1e-3


@dataclass
class Pair:
    first: Any  # Conv node
    between: Any | None  # the activation node, None when Conv feeds Conv directly
    second: Any  # Conv node
    clip: float | None = None  # the upper Clip bound when `between` is Clip(x, 0, hi)
    #: per-channel max / min pre-activation on the calibration data (measured when needed)
    pre_max: np.ndarray | None = None
    pre_min: np.ndarray | None = None
    total: np.ndarray = field(default_factory=lambda: np.ones(0))  # product of scales so far


def find_pairs(view: GraphView) -> list[Pair]:
    """Every Conv -> [homogeneous op | Clip(0, hi)] -> Conv chain with private weights."""
    pairs = []
    for first in view.graph.node:
        w1 = conv_weight(view, first)
        if w1 is None:
            continue
        nxt = view.only_consumer(first.output[0])
        between, clip = None, None
        if nxt is not None and nxt.op_type != "Conv":
            bound = clip_bound(view, nxt)
            if nxt.op_type not in HOMOGENEOUS and bound is None:
                continue
            between, clip = nxt, bound
            nxt = view.only_consumer(nxt.output[0])
        if nxt is None or nxt.op_type != "Conv" or nxt.input[0] != (between or first).output[0]:
            continue
        w2 = conv_weight(view, nxt)
        group = int(attr(nxt, "group", 1))
        if w2 is None or w2.shape[1] * group != w1.shape[0]:
            continue
        pairs.append(Pair(first, between, nxt, clip, total=np.ones(w1.shape[0])))
    return pairs


def clip_bound(view: GraphView, node: Any) -> float | None:
    """hi for a ``Clip(x, 0, hi)`` node (ReLU6 and friends), else None."""
    if node.op_type != "Clip":
        return None
    if view.opset() < 11:
        lo, hi = attr(node, "min"), attr(node, "max")
    else:
        names = list(node.input[1:3]) + [""] * (3 - len(node.input))
        lo, hi = (view.value(n) if n else None for n in names[:2])
    if lo is None or hi is None or float(np.asarray(lo)) != 0.0:
        return None
    hi = float(np.asarray(hi))
    return hi if np.isfinite(hi) and hi > 0 else None


def is_depthwise(view: GraphView, conv: Any) -> bool:
    weight = view.value(conv.input[1])
    return weight.shape[1] == 1 and int(attr(conv, "group", 1)) == weight.shape[0]


def equalize(model: Any, samples: list[dict[str, np.ndarray]], *,
             relu6: str = "keep", criterion: str = "weights") -> dict[str, Any]:
    """Equalize every pair in place; returns what changed (pairs, channels, range balance).

    ``criterion="weights"`` (the default): the paper's s_i = sqrt(r1_i / r2_i).
    ``criterion="activation"``: with per-channel int8 weights (every backend here) the first
    conv's output-channel scale is free, so balance the calibrated *activation* range a_i
    between the convs against what the second conv pays: nothing when it is depthwise (every
    channel made as wide as the widest), else its input-channel weight range r2_i (s_i =
    sqrt(a_i / r2_i)). Measured against the default on digits-cnn and the widened test CNN:
    within noise on every backend (docs/cnn-int8.md), so the paper's criterion stays."""
    view = GraphView(model)
    pairs = find_pairs(view)
    replaced = 0
    if relu6 == "relu":
        for pair in pairs:
            if pair.clip is not None:
                _clip_to_relu(pair.between)
                pair.clip = None
                replaced += 1
        view.refresh()
    clipped = [p for p in pairs if p.clip is not None]
    pairs = [p for p in pairs if p.clip is None]  # "keep": a Clip pair is left alone
    if pairs and criterion == "activation":
        _measure_pre_activations(model, view, pairs, samples)
    before = [_imbalance(view, p) for p in pairs]
    for _ in range(ROUNDS):
        worst = 0.0
        for pair in pairs:
            worst = max(worst, _equalize_pair(view, pair,
                                              by_activation=criterion == "activation"))
        if worst < CONVERGED:
            break
    channels = sum(int(np.sum(np.abs(np.log(p.total)) > CONVERGED)) for p in pairs)
    for pair in pairs:
        if np.any(np.abs(np.log(pair.total)) > 1e-9):
            _rename_rescaled(model, pair)
    return {
        "pairs": len(pairs), "criterion": criterion, "channels_scaled": channels,
        "pair_names": [f"{p.first.name}->{p.second.name}" for p in pairs],
        "relu6": relu6 if replaced or clipped else "no ReLU6 between paired convs",
        "relu6_replaced_by_relu": replaced,
        "relu6_pairs_left_alone": len(clipped),
        # max over pairs of the per-channel weight range spread (_imbalance)
        "range_ratio_before": _worst(before), "range_ratio_after":
            _worst([_imbalance(view, p) for p in pairs]),
    }


def _equalize_pair(view: GraphView, pair: Pair, *, by_activation: bool = False) -> float:
    w1 = view.value(pair.first.input[1]).astype(np.float64)
    w2 = view.value(pair.second.input[1]).astype(np.float64)
    r2 = input_channel_ranges(w2, int(attr(pair.second, "group", 1)))
    if by_activation and is_depthwise(view, pair.second):
        s = _stretch(pair)
    else:
        r1 = activation_width(pair) if by_activation else \
            np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.sqrt(r1 / r2)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    if np.all(np.abs(np.log(s)) < 1e-9):
        return 0.0
    pair.total = pair.total * s
    shape1 = (-1,) + (1,) * (w1.ndim - 1)
    view.set_value(pair.first.input[1], w1 / s.reshape(shape1))
    bias = ensure_bias(view, pair.first, w1.shape[0], w1.dtype)
    view.set_value(bias, view.value(bias).astype(np.float64) / s)
    view.set_value(pair.second.input[1],
                   w2 * input_channel_map(s, w2.shape, int(attr(pair.second, "group", 1))))
    return float(np.abs(np.log(s)).max())


def _rename_rescaled(model: Any, pair: Pair) -> None:
    """Give the tensors between an equalized pair new names: their channels now carry other
    values than the original graph's, so a per-layer comparison by tensor name (``compare
    --per-layer``) must not match them; it folds them into the next matched node's region."""
    inner = [pair.first.output[0]] + ([pair.between.output[0]] if pair.between else [])
    outputs = {o.name for o in model.graph.output}
    renamed = {name: f"{name}.equalized" for name in inner if name not in outputs}
    for node in model.graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    kept = [v for v in model.graph.value_info if v.name not in renamed]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)


#: the most a channel is scaled up to meet the widest one (a nearly silent channel stays)
MAX_STRETCH = 1000.0


def activation_width(pair: Pair) -> np.ndarray:
    """Each channel's calibrated activation range after the op between, in the current graph
    (the first conv's output channel i is divided by ``pair.total[i]`` so far)."""
    hi = pair.clip if pair.clip is not None else np.inf
    top = np.minimum(pair.pre_max, hi)
    low = np.zeros_like(pair.pre_min) if pair.between is not None and \
        pair.between.op_type in ("Relu", "Clip") else pair.pre_min
    return (np.maximum(top, 0.0) - np.minimum(low, 0.0)) / pair.total


def _stretch(pair: Pair) -> np.ndarray:
    """This round's scales that make every channel's activation range as wide as the widest
    one's (a channel over MAX_STRETCH times narrower is left alone: nearly silent)."""
    width = activation_width(pair)
    widest = width.max(initial=0.0)
    if widest <= 0:
        return np.ones_like(width)
    return np.where(width > widest / MAX_STRETCH, width / widest, 1.0)


def input_channel_ranges(w2: np.ndarray, group: int) -> np.ndarray:
    """Largest |weight| reading each input channel of a (grouped) Conv weight."""
    cout, cin_g = w2.shape[:2]
    per = np.abs(w2).reshape(group, cout // group, cin_g, -1).max(axis=(1, 3))
    return per.reshape(group * cin_g)


def input_channel_map(s: np.ndarray, shape: tuple[int, ...], group: int) -> np.ndarray:
    """Per-input-channel factors laid out to multiply a (grouped) Conv weight."""
    cout, cin_g = shape[:2]
    grid = s.reshape(group, 1, cin_g).repeat(cout // group, axis=1).reshape(cout, cin_g)
    return grid.reshape(cout, cin_g, *[1] * (len(shape) - 2))


def _imbalance(view: GraphView, pair: Pair) -> float:
    """The worse of two spreads (largest / smallest per-channel |weight| range): the first
    conv's output channels (the per-tensor activation between them pays for it) and the
    second conv's input channels (its per-channel weight scales cannot absorb it)."""
    w1 = view.value(pair.first.input[1])
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    r2 = input_channel_ranges(view.value(pair.second.input[1]),
                              int(attr(pair.second, "group", 1)))
    return max(spread(r1), spread(r2))


def spread(ranges: np.ndarray) -> float:
    """Largest / smallest range, over channels within SILENT of the largest (a channel 10^4
    times narrower than the widest holds nothing to quantize; real CNNs have such channels
    and they would make the number meaningless)."""
    top = ranges.max(initial=0.0)
    ranges = ranges[ranges > top * SILENT]
    return float(top / ranges.min()) if ranges.size else 1.0


SILENT = 1e-4


def _worst(values: list[float]) -> float:
    return round(max(values), 3) if values else 1.0


def _clip_to_relu(node: Any) -> None:
    node.op_type = "Relu"
    del node.input[1:]
    del node.attribute[:]


def _measure_pre_activations(model: Any, view: GraphView, pairs: list[Pair],
                             samples: list[dict[str, np.ndarray]]) -> None:
    """Per-channel max and min of each pair's pre-activation (the first Conv's output)."""
    nodes, names = [], []
    for k, pair in enumerate(pairs):
        axes = [0, *range(2, 2 + len(_spatial(view, pair)))]
        for op in ("ReduceMax", "ReduceMin"):
            name = f"__mp_pre_{op}_{k}"
            nodes += run.reduce_node(op, pair.first.output[0], name, axes, view.opset())
            names.append(name)
    parts = run.run(run.with_outputs(model, nodes, names), samples, names)
    for k, pair in enumerate(pairs):
        highs = [values[f"__mp_pre_ReduceMax_{k}"] for _, values in parts]
        lows = [values[f"__mp_pre_ReduceMin_{k}"] for _, values in parts]
        pair.pre_max = np.max(highs, axis=0).astype(np.float64)
        pair.pre_min = np.min(lows, axis=0).astype(np.float64)


def _spatial(view: GraphView, pair: Pair) -> tuple[int, ...]:
    return view.value(pair.first.input[1]).shape[2:]
