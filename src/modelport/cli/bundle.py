"""Commands on a built bundle: `verify`, `pack`, `run`, `build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelport.errors import UsageError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check a bundle's checksums and re-run its stored samples")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("pack", help="pack a verified bundle into one .tar.gz for copying")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--out", type=Path, default=None, help="archive path (default BUNDLE.tar.gz)")
    p.add_argument("--force", action="store_true", help="replace an existing archive")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("run", help="run a bundle on text, an image or an .npz feed and print the "
                                   "outputs (labels with scores for classifiers)")
    p.add_argument("bundle", metavar="BUNDLE")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a sentence (repeatable) for text models")
    src.add_argument("--image", action="append", type=Path,
                     help="a .png/.jpg/.npy image (repeatable) for image models: resized and "
                          "normalized as the bundle's manifest says")
    src.add_argument("--input", type=Path, help=".npz file: input name -> array")
    src.add_argument("--prompt", help="text-generation bundles: the prompt to continue")
    p.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                   help="text generation: at most N new tokens (stops at the model's eos)")
    p.add_argument("--temperature", type=float, default=None,
                   help="text generation: sample at this temperature (default greedy)")
    p.add_argument("--seed", type=int, default=0, help="text generation: sampling seed")
    p.add_argument("--top-k", type=int, default=3, help="labels shown per input (classifiers)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write outputs as JSON here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("build", help="build a bundle's device artifact here, ahead of first load "
                                     "(TensorRT: the engine for this GPU, cached in the bundle)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if a matching engine exists")
    p.set_defaults(func=cmd_build)


def cmd_verify(args: argparse.Namespace) -> int:
    from modelport.bundle.verify import verify_bundle

    report = verify_bundle(args.bundle, threads=args.threads)
    line = f"OK {report['target']}: {report['files_checked']} files match their sha256"
    if report.get("outputs_checked"):
        m = report["metrics"]
        line += (f"; {m['samples']} stored samples vs reference: cosine {m['cosine_mean']:.5f}"
                 f" (min {m['cosine_min']:.5f}), max abs err {m['max_abs_err']:.3g}")
    print(line)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from modelport.bundle.pack import pack_bundle

    print(f"packed {pack_bundle(args.bundle, args.out, force=args.force)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from modelport.bundle import open_bundle

    bundle = open_bundle(args.bundle)
    pre = bundle.manifest.get("preprocessing") or {}
    if args.prompt is not None:
        from modelport.cli.generate import print_generation

        return print_generation(bundle, args)
    if args.image:
        if not pre.get("image"):
            raise UsageError(f"{bundle.path} is not an image model: use --text or --input")
        from modelport.shapes import fit_arrays
        from modelport.tasks.image import load_pixels

        pixels = np.concatenate([load_pixels(p, pre["image"]) for p in args.image])
        feeds = fit_arrays({bundle.inputs[0].name: pixels}, bundle.inputs)
    elif args.text:
        tokenizer = bundle.tokenizer()
        if tokenizer is None:
            raise UsageError(f"{bundle.path} has no tokenizer: use --input file.npz instead")
        from modelport.shapes import fit_arrays

        feeds = fit_arrays(tokenizer.encode(args.text, {s.name: s for s in bundle.inputs}),
                            bundle.inputs)
    else:
        from modelport.calibration_data.loaders import read_arrays

        if not args.input.is_file():
            raise UsageError(f"input file '{args.input}' not found")
        feeds = read_arrays(args.input, {s.name: s for s in bundle.inputs})
    with bundle.session(threads=args.threads) as session:
        outputs = session.infer(feeds)
    if pre.get("id2label") and (args.text or args.image):
        from modelport.cli.predictions import print_predictions

        return print_predictions(bundle, outputs, args)
    np.set_printoptions(precision=5, suppress=True, threshold=64, edgeitems=4, linewidth=100)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype}{list(value.shape)}")
        print(np.array2string(value))
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, {k: v.tolist() for k, v in outputs.items()})
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from modelport import registry
    from modelport.bundle import open_bundle

    bundle = open_bundle(args.bundle)
    backend = registry.get_backend(bundle.target.runtime)()
    record = backend.build_on_device(bundle, rebuild=args.rebuild)
    verb = "built" if record.get("built_now") else "reused"
    print(f"{verb} {record['engine_path']} for {record['gpu_name']} (compute capability "
          f"{record['compute_capability']}, TensorRT {record['tensorrt_version']})")
    return 0
