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

    p = sub.add_parser("run", help="run a bundle on its task's natural input and print the "
                                   "answer (labels, words, spans, tokens...; raw outputs for "
                                   "--input feeds)")
    p.add_argument("bundle", metavar="BUNDLE")
    add_run_inputs(p)
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
    if report.get("outputs_checked") and "chrf" in report["metrics"]:  # encoder-decoder
        m = report["metrics"]
        line += (f" ({', '.join(report['graphs'])} graphs); generated again from the stored "
                 f"inputs: chrF {m['chrf']:.2f} vs the stored outputs"
                 f"{', tokens equal' if m['tokens_equal'] else ''}")
    elif report.get("outputs_checked"):
        m = report["metrics"]
        line += (f"; {m['samples']} stored samples vs reference: cosine {m['cosine_mean']:.5f}"
                 f" (min {m['cosine_min']:.5f}), max abs err {m['max_abs_err']:.3g}")
    print(line)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from modelport.bundle.pack import pack_bundle

    print(f"packed {pack_bundle(args.bundle, args.out, force=args.force)}")
    return 0


def add_run_inputs(p: argparse.ArgumentParser) -> None:
    """`run`'s inputs: each task takes its own (the bundle's task says which; a wrong one is a
    one-line error naming what the bundle takes)."""
    src = p.add_argument_group("inputs (one kind per call; the bundle's task decides which)")
    src.add_argument("--text", action="append",
                     help="a sentence (repeatable): classifiers, token classification, feature "
                          "extraction, fill-mask (with the model's own mask token), causal LMs")
    src.add_argument("--image", action="append", type=Path,
                     help="a .png/.jpg/.npy image (repeatable) for image models: resized and "
                          "normalized as the bundle's manifest says")
    src.add_argument("--audio", action="append", type=Path,
                     help="a .wav/.flac/.ogg file (repeatable) for audio models: mono, resampled "
                          "to the model's rate")
    src.add_argument("--question", action="append",
                     help="question-answering: a question (repeatable) about --context")
    src.add_argument("--context", help="question-answering: the passage the answer is taken "
                                       "from (long passages are read in overlapping windows)")
    src.add_argument("--prompt", help="text-generation bundles: the prompt to continue")
    src.add_argument("--input", type=Path, help="any bundle: an .npz file (input name -> "
                                                "array); prints the raw outputs")
    opt = p.add_argument_group("task options")
    opt.add_argument("--labels", help="zero-shot image classification: the candidate labels, "
                                      "comma-separated (\"a cat,a dog\")")
    opt.add_argument("--threshold", type=float, default=None,
                     help="object detection: keep detections scoring at least this (default "
                          "the task's own)")
    opt.add_argument("--save-mask", type=Path, default=None, metavar="PNG",
                     help="image segmentation: also write the class-index mask as a PNG here")
    opt.add_argument("--top-k", type=int, default=3,
                     help="labels shown per input (classifiers), tokens per mask (fill-mask)")
    opt.add_argument("--max-new-tokens", type=int, default=32, metavar="N",
                     help="text generation: at most N new tokens (stops at the model's eos; "
                          "Whisper: per 30 s window)")
    opt.add_argument("--num-beams", type=int, default=None, metavar="N",
                     help="text2text generation, Whisper: beam search with N beams (1: "
                          "greedy; default the model's generation config)")
    opt.add_argument("--language", default=None, metavar="LANG",
                     help="Whisper: the spoken language (en, de, english, ...; default the "
                          "model's generation config, else detected per clip)")
    opt.add_argument("--task", dest="speech_task", choices=("transcribe", "translate"),
                     default=None, help="Whisper: transcribe in the spoken language or "
                                        "translate to English (default the model's "
                                        "generation config)")
    opt.add_argument("--temperature", type=float, default=None,
                     help="text generation: sample at this temperature (default greedy)")
    opt.add_argument("--seed", type=int, default=0, help="text generation: sampling seed")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads (default: the runtime's own choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the answer as JSON here")


def run_inputs(args: argparse.Namespace):
    """`run`'s flags as the tasks' RunInputs (the --input file read, --labels split)."""
    from modelport.tasks.base import RunInputs

    labels = None
    if args.labels is not None:
        labels = [part.strip() for part in args.labels.split(",") if part.strip()]
        if not labels:
            raise UsageError("--labels is empty: give the candidate labels, comma-separated "
                             "(--labels \"a cat,a dog\")")
    return RunInputs(text=args.text, image=args.image, audio=args.audio,
                     question=args.question, context=args.context, prompt=args.prompt,
                     feeds=args.input, labels=labels, threshold=args.threshold,
                     save_mask=args.save_mask, top_k=args.top_k,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                     num_beams=args.num_beams, language=args.language,
                     speech_task=args.speech_task,
                     seed=args.seed)


def cmd_run(args: argparse.Namespace) -> int:
    from modelport.bundle import open_bundle
    from modelport.tasks import task_of

    bundle = open_bundle(args.bundle)
    task = task_of(bundle)
    given = run_inputs(args)
    task.check(bundle, given)
    if given.feeds is not None:
        from modelport.calibration_data.loaders import read_arrays

        if not args.input.is_file():
            raise UsageError(f"input file '{args.input}' not found")
        given.feeds = read_arrays(args.input, {s.name: s for s in bundle.inputs})
    with bundle.session(threads=args.threads) as session:
        answer = task.predict(bundle, session, given)
    print(answer)
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, answer.to_dict())
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
