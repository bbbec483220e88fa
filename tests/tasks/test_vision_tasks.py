"""object-detection (DETR, YOLOS) and semantic image-segmentation (SegFormer, UperNet) folders
through export: every FP32 bundle against transformers' raw outputs, `run`'s printed answer
against transformers' pipeline on the same image, INT8 (calibrated on a folder of PNGs) within
its task budget, and one-line errors for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.tasks import vision_checkpoints as vc

pytestmark = [pytest.mark.slow, pytest.mark.onnxruntime, pytest.mark.openvino]

FP32 = ("onnxruntime:cpu:fp32", "openvino:cpu:fp32")
INT8 = ("onnxruntime:cpu:int8", "openvino:cpu:int8")
ATOL = 1e-4
#: one family per task is also built at INT8 (both runtimes), to keep the suite short
FOLDERS = {"detr": (vc.detr, FP32 + INT8), "yolos": (vc.yolos, FP32),
           "segformer": (vc.segformer, FP32 + INT8), "upernet": (vc.upernet, FP32)}
DETECTORS = ("detr", "yolos")
SEGMENTERS = ("segformer", "upernet")
LOW_THRESHOLD = 0.2  # random-init scores are spread, but a trained model's 0.5 is too strict
#: INT8 budget in the task metric's points: the default (one F1 point) for the detector; five
#: mean-IoU points for the segmenter, whose 16 x 16 logits make one flipped pixel of a small
#: class cost ~0.5 point (measured: ORT 0.7, OpenVINO 2.1 points on 7 evaluation scenes)
BUDGET_POINTS = {"detr": 0.01, "segformer": 0.05}


@pytest.fixture(scope="module")
def vision(tmp_path_factory) -> dict:
    """Each folder written once and exported once (no timing); INT8 calibrated on PNGs."""
    import modelport
    from modelport.metrics import Budget

    root = tmp_path_factory.mktemp("vision")
    images = vc.write_scenes(root / "images", 32, seed=3)
    out = {"images": images, "folders": {}, "results": {}}
    for name, (make, targets) in FOLDERS.items():
        folder = make(root / name)
        out["folders"][name] = folder
        out["results"][name] = modelport.export(
            str(folder), list(targets), out=root / f"out-{name}", bench=None, progress=False,
            calib=images if any(t.endswith("int8") for t in targets) else None,
            budget=Budget(max_accuracy_drop=BUDGET_POINTS.get(name, 0.01)))
    return out


def _image(tmp_path: Path) -> Path:
    scene = vc.write_scenes(tmp_path / "scene", 1, size=(45, 61), seed=7) / "0.png"
    return scene.rename(tmp_path / "photo.png")


def _torch_model(folder: Path):
    import transformers

    auto = ("AutoModelForObjectDetection" if folder.name in DETECTORS
            else "AutoModelForSemanticSegmentation")
    return getattr(transformers, auto).from_pretrained(folder, local_files_only=True).eval()


def _processor(folder: Path):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(folder, local_files_only=True)


def _run_json(bundle: Path, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "answer.json"
    proc = run_cli("run", str(bundle), *args, "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_inspect_reads_the_task_and_the_named_outputs(vision):
    proc = run_cli("inspect", str(vision["folders"]["detr"]), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["task"] == "object-detection"
    assert plan["detected_from"] == "architectures: DetrForObjectDetection"
    assert [o["name"] for o in plan["outputs"]] == ["logits", "pred_boxes"]
    assert plan["inputs"][0]["shape"] == ["batch", 3, vc.SIZE, vc.SIZE]
    proc = run_cli("inspect", str(vision["folders"]["upernet"]))
    assert proc.returncode == 0, proc.stderr
    assert "image-segmentation (from architectures: UperNetForSemanticSegmentation)" in proc.stdout
    assert "logits float32[batch, 4, height, width]" in proc.stdout
    assert "mean IoU" in proc.stdout


@pytest.mark.parametrize("name", list(FOLDERS))
@pytest.mark.parametrize("target", FP32)
def test_fp32_bundles_match_transformers_raw_outputs(vision, name, target, tmp_path):
    """The bundle's own preprocessing of a PNG equals the folder's image processor's, and its
    outputs equal the torch model's on those pixels (1e-4 abs)."""
    import torch
    from PIL import Image

    import modelport
    from modelport.tasks.vision_input import image_batch

    folder = vision["folders"][name]
    bundle_path = vision["results"][name].bundles[target]
    image = _image(tmp_path)
    expected = _processor(folder)(images=Image.open(image).convert("RGB"), return_tensors="pt")
    with torch.no_grad():
        ref = _torch_model(folder)(pixel_values=expected["pixel_values"])
    with modelport.load(bundle_path) as session:
        feeds, sizes, _ = image_batch(session.bundle, [image])
        np.testing.assert_allclose(feeds["pixel_values"], expected["pixel_values"].numpy(),
                                   atol=1e-5, rtol=0)
        got = session.infer(feeds)
        manifest = session.bundle.manifest
    names = ["logits", "pred_boxes"] if name in DETECTORS else ["logits"]
    assert [o["name"] for o in manifest["outputs"]] == names
    for out in names:
        np.testing.assert_allclose(got[out], getattr(ref, out).numpy(), atol=ATOL, rtol=0)
    pre = manifest["preprocessing"]
    assert sizes == [(45, 61)] and pre["image"]["size"] == [vc.SIZE, vc.SIZE]
    labels = vc.DET_LABELS if name in DETECTORS else vc.SEG_LABELS
    assert list(pre["id2label"].values()) == labels
    if name in DETECTORS:
        assert pre["detection"] == {"head": "set", "logits": "logits", "boxes": "pred_boxes",
                                    "threshold": 0.5, "score": "softmax"}


@pytest.mark.parametrize("name", DETECTORS)
def test_run_prints_the_boxes_of_transformers_pipeline(vision, name, tmp_path):
    from PIL import Image
    from transformers import pipeline

    folder = vision["folders"][name]
    image = _image(tmp_path)
    detector = pipeline("object-detection", model=_torch_model(folder),
                        image_processor=_processor(folder))
    expected = detector(Image.open(image).convert("RGB"), threshold=LOW_THRESHOLD)
    answer = _run_json(vision["results"][name].bundles["onnxruntime:cpu:fp32"], tmp_path,
                       "--image", str(image), "--threshold", str(LOW_THRESHOLD))
    got = answer["predictions"][0]["detections"]
    assert answer["predictions"][0]["width"] == 61 and answer["predictions"][0]["height"] == 45
    assert 0 < len(expected) < 8 * 3, "the folder's scores do not exercise the threshold"
    assert len(got) == len(expected)
    for ours, theirs in zip(sorted(got, key=lambda d: -d["score"]),
                            sorted(expected, key=lambda d: -d["score"]), strict=True):
        assert ours["label"] == theirs["label"]
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)
        box = theirs["box"]  # the pipeline truncates pixel coordinates to ints
        for value, pixel in zip(ours["box"], (box["xmin"], box["ymin"], box["xmax"],
                                              box["ymax"]), strict=True):
            assert abs(value - pixel) < 1.0 + 1e-3
    printed = run_cli("run", str(vision["results"][name].bundles["openvino:cpu:fp32"]),
                      "--image", str(image), "--threshold", str(LOW_THRESHOLD))
    assert printed.returncode == 0, printed.stderr
    assert f"{len(expected)} detection(s) with score > {LOW_THRESHOLD:g}" in printed.stdout
    assert expected[0]["label"] in printed.stdout


@pytest.mark.parametrize("name", SEGMENTERS)
def test_run_prints_the_class_shares_of_transformers_pipeline(vision, name, tmp_path):
    from PIL import Image
    from transformers import pipeline

    folder = vision["folders"][name]
    image = _image(tmp_path)
    segmenter = pipeline("image-segmentation", model=_torch_model(folder),
                         image_processor=_processor(folder))
    expected = segmenter(Image.open(image).convert("RGB"), subtask="semantic")
    mask_path = tmp_path / "mask.png"
    answer = _run_json(vision["results"][name].bundles["openvino:cpu:fp32"], tmp_path,
                       "--image", str(image), "--save-mask", str(mask_path))
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (45, 61)
    ref = np.full(mask.shape, -1)
    ids = {label: i for i, label in enumerate(vc.SEG_LABELS)}
    for segment in expected:
        ref[np.asarray(segment["mask"]) > 0] = ids[segment["label"]]
    assert (mask == ref).mean() >= 0.999  # argmax ties of float rounding may flip a pixel
    shares = {c["label"]: c["share"] for c in answer["predictions"][0]["classes"]}
    assert set(shares) == {s["label"] for s in expected} and len(shares) >= 2
    for segment in expected:
        assert shares[segment["label"]] == pytest.approx(
            (np.asarray(segment["mask"]) > 0).mean(), abs=2e-3)


@pytest.mark.parametrize("name", ["detr", "segformer"])
def test_int8_stays_within_the_task_budget(vision, name):
    rows = {r["target"]: r for r in vision["results"][name].rows}
    metric = "detection_f1" if name == "detr" else "mean_iou"
    for target in INT8:
        row = rows[target]
        assert row["status"] != "below budget", row.get("reason")
        assert row["fidelity"]["accuracy_drop"] <= BUDGET_POINTS[name] + 1e-12
        assert row["fidelity"][metric] >= 1.0 - BUDGET_POINTS[name]
        assert target in vision["results"][name].bundles
    assert rows["onnxruntime:cpu:fp32"]["fidelity"][metric] == 1.0


def test_int8_without_images_is_refused_naming_calib(vision, tmp_path):
    proc = run_cli("export", str(vision["folders"]["yolos"]), "--target",
                   "onnxruntime:cpu:int8", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "--calib" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "onnxruntime-cpu-int8").exists()


@pytest.mark.parametrize(("name", "extra", "fragment"), [
    ("detr", ("--labels", "a,b"), "--labels does not apply"),
    ("detr", ("--save-mask", "m.png"), "--save-mask does not apply"),
    ("detr", ("--threshold", "1.5"), "--threshold is a score in [0, 1)"),
    ("segformer", ("--threshold", "0.3"), "--threshold does not apply"),
    ("segformer", ("--text", "a cat"), "is not a text model"),
    ("segformer", ("--save-mask", "m.txt"), "written as a .png"),
])
def test_bad_run_input_is_one_line(vision, tmp_path, name, extra, fragment):
    image = _image(tmp_path)
    bundle = vision["results"][name].bundles["onnxruntime:cpu:fp32"]
    args = extra if "--text" in extra else ("--image", str(image), *extra)
    proc = run_cli("run", str(bundle), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


@pytest.mark.parametrize("name", ["detr", "segformer"])
def test_a_file_that_is_not_an_image_is_one_line(vision, tmp_path, name):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image\n")
    proc = run_cli("run", str(vision["results"][name].bundles["onnxruntime:cpu:fp32"]),
                   "--image", str(fake))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: cannot read '{fake}' as an image: cannot identify " \
                                  f"image file '{fake}'"


def test_run_needs_neither_torch_nor_transformers(vision, tmp_path):
    """What a runtime-only install runs: the tasks' pre/post-processing is numpy + Pillow."""
    import subprocess

    image = _image(tmp_path)
    code = ("import sys; sys.modules.update(torch=None, transformers=None); "
            "from modelport.cli import main; sys.exit(main(sys.argv[1:]))")
    for name, extra in (("detr", ("--threshold", "0.2")),
                        ("segformer", ("--save-mask", str(tmp_path / "m.png")))):
        bundle = vision["results"][name].bundles["onnxruntime:cpu:fp32"]
        proc = subprocess.run([sys.executable, "-c", code, "run", str(bundle), "--image",
                               str(image), *extra], check=False, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "photo.png (61x45)" in proc.stdout
    assert (tmp_path / "m.png").is_file()
