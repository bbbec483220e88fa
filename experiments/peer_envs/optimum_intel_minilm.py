"""Runs in optimum-intel's own venv (its pins differ from ours; experiments/peers.py makes it):
what a user of optimum-intel writes to get an INT8 sentence-embedding IR, with its defaults.

    python optimum_intel_minilm.py MODEL_DIR CALIB.npz OUT_DIR

``OVSentenceTransformer.from_pretrained(export=True)`` (the export, pooling in the graph), then
``OVQuantizer.quantize`` with ``OVQuantizationConfig()`` on the calibration feeds given (the
same token ids modelport calibrates on). Prints one JSON line: versions and the IR's path."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    import nncf
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer, OVSentenceTransformer

    src, calib, out = sys.argv[1], np.load(sys.argv[2]), Path(sys.argv[3])
    model = OVSentenceTransformer.from_pretrained(src, export=True)
    names = [p.get_any_name() for p in model.model.inputs]
    rows = len([k for k in calib.files if k.startswith(names[0] + ":")])
    feeds = [{n: calib[f"{n}:{i}"] for n in names} for i in range(rows)]  # own lengths
    quantizer = OVQuantizer.from_pretrained(model)
    quantizer.quantize(calibration_dataset=nncf.Dataset(feeds), save_directory=out,
                       ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    xml = next(out.rglob("openvino_model.xml"))
    print(json.dumps({"xml": str(xml), "inputs": names,
                      "versions": {p: importlib.metadata.version(p) for p in
                                   ("optimum-intel", "optimum", "openvino", "nncf",
                                    "transformers")}}))


if __name__ == "__main__":
    main()
