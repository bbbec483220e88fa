"""The catalog of bad input, faults and tampering: one row per case, one test per row.

This table is the single source of truth: every row has a test named ``test_<id>`` in one of
the ``tests/errors/test_errors_*.py`` files (checked by ``test_every_row_has_a_test``), and the
errors table of docs/reliability.md is generated from it (``python tests/support/error_catalog.py``
prints it; ``test_docs_table_matches_the_catalog`` checks the page holds exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    id: str
    area: str
    situation: str
    says: str  # the error class (exit 2 unless noted), "warning", or "works"
    fix: str


ROWS: tuple[Row, ...] = (
    # -- model sources ---------------------------------------------------------------------
    Row("model_missing_path", "model", "MODEL path does not exist", "ModelLoadError",
        "check the path; MODEL is builtin:NAME, file.py:factory, .pt2 or .onnx"),
    Row("model_unknown_builtin", "model", "`builtin:` name with a typo", "ModelLoadError",
        "use the suggested name"),
    Row("model_not_a_model_file", "model", "MODEL is a file of another kind (.txt)",
        "ModelLoadError", "pass a .py:factory, .pt2 or .onnx"),
    Row("model_onnx_truncated", "model", "truncated .onnx", "ModelLoadError",
        "re-export or re-download it"),
    Row("model_onnx_random_bytes", "model", ".onnx full of random bytes", "ModelLoadError",
        "re-export or re-download it"),
    Row("model_onnx_empty", "model", "empty .onnx", "ModelLoadError", "re-export it"),
    Row("model_onnx_git_lfs_pointer", "model", ".onnx that is a Git LFS pointer",
        "ModelLoadError", "`git lfs pull`"),
    Row("model_onnx_external_data_missing", "model",
        ".onnx whose external weights file is missing", "ModelLoadError",
        "copy the .data file next to the .onnx"),
    Row("model_onnx_invalid_graph", "model", ".onnx that fails the ONNX type checks",
        "ModelLoadError", "fix or re-export it"),
    Row("model_onnx_custom_op", "model", ".onnx with a custom-domain op no runtime knows",
        "UnsupportedOp", "names the op and node; export without it or pick another target"),
    Row("model_onnx_op_without_kernel", "model",
        ".onnx op the runtime has no kernel for (Erf on float64)", "UnsupportedOp",
        "names the node; another target, float32 or another --opset"),
    Row("model_pt2_other_torch_version", "model", ".pt2 saved by another torch version",
        "ModelLoadError", "re-export it with this torch"),
    Row("hf_weights_truncated", "model", "Hugging Face folder with a truncated model.safetensors",
        "ModelLoadError", "names the file and its size; copy it again"),
    Row("hf_weights_garbage", "model", "Hugging Face folder whose model.safetensors is other bytes",
        "ModelLoadError", "names the file; copy it again or re-save the model"),
    Row("hf_weights_shard_missing", "model", "sharded folder whose index names a missing shard",
        "ModelLoadError", "names the shard; copy the whole folder"),
    Row("hf_weights_mismatch_config", "model", "weights whose shapes differ from config.json",
        "ModelLoadError", "re-save the model with save_pretrained()"),
    Row("model_factory_missing_function", "model", "file.py has no such factory",
        "ModelLoadError", "name an existing function"),
    Row("model_factory_raises", "model", "factory() raises", "ModelLoadError",
        "shows the exception; fix the factory"),
    Row("model_factory_wrong_type", "model", "factory() returns something else than a module",
        "ModelLoadError", "return (nn.Module, example_inputs)"),
    Row("model_factory_no_example_inputs", "model", "factory() gives no example inputs",
        "ModelLoadError", "return a tensor, tuple or dict of tensors second"),
    Row("model_forward_fails_on_examples", "model", "forward() raises on its own examples",
        "ModelLoadError", "fix forward() or the example inputs"),
    Row("model_unsupported_torch_op", "model", "an op neither ONNX exporter converts",
        "UnsupportedOp", "names the op and the module using it"),
    Row("model_external_data_round_trip", "model",
        "weights over the 2 GB protobuf limit (threshold lowered in the test)", "works",
        "exported with external data; the bundle carries model.onnx.data and verifies"),
    # -- feeds -----------------------------------------------------------------------------
    Row("feed_wrong_name", "feeds", "feed with an unknown input name", "InputError",
        "lists the inputs the model takes"),
    Row("feed_missing_input", "feeds", "feed without a required input", "InputError",
        "lists the inputs the model takes"),
    Row("feed_wrong_rank", "feeds", "array of the wrong rank", "InputError",
        "shows the expected shape"),
    Row("feed_wrong_dtype", "feeds", "float64 where float32 is expected", "InputError",
        "`.astype(np.float32)`"),
    Row("feed_not_an_array", "feeds", "a list instead of a numpy array", "InputError",
        "pass numpy arrays"),
    Row("feed_static_dim_mismatch", "feeds", "an image of another size than exported",
        "InputError", "resize to the static shape"),
    Row("feed_dim_outside_exported_range", "feeds",
        "sequence longer than the model's position table", "InputError",
        "names the failing node; stay within the exported range"),
    Row("feed_index_out_of_range", "feeds", "token id beyond the vocabulary", "InputError",
        "names the failing node and the valid range"),
    Row("feed_tflite_static_shape", "feeds", "TFLite bundle, or an ONNX Runtime / OpenVINO "
        "bundle built with `--shape`, given another batch size than built for",
        "InputError", "names the static shape; re-export with --shape"),
    Row("feed_npz_wrong_key", "feeds", "`modelport run --input` .npz with the wrong array name",
        "InputError", "lists the inputs the model takes"),
    # -- calibration / evaluation data -----------------------------------------------------
    Row("data_missing_path", "data", "--calib path does not exist", "CalibrationDataError",
        "check the path"),
    Row("data_empty_folder", "data", "--calib folder without .npz/.npy files",
        "CalibrationDataError", "add feed files"),
    Row("data_not_numpy", "data", "a corrupt .npz", "CalibrationDataError", "re-save it"),
    Row("data_pickled_npz", "data", ".npz holding a pickled object array",
        "CalibrationDataError", "refused, never unpickled; save plain arrays"),
    Row("data_wrong_input_names", "data", "feeds named differently from the model inputs",
        "CalibrationDataError", "names both sets of inputs"),
    Row("data_nan_inf", "data", "NaN or Inf in a sample", "CalibrationDataError",
        "names the sample; clean the data"),
    Row("data_shapes_disagree", "data", "samples of different shapes", "CalibrationDataError",
        "pad or resize to one shape"),
    Row("data_dtype_mismatch", "data", "float64 data for a float32 model",
        "CalibrationDataError", "`.astype(np.float32)`"),
    Row("data_text_for_a_non_text_model", "data", "a text file for a model without tokenizer",
        "CalibrationDataError", "give .npz feeds"),
    Row("data_text_blank_lines", "data", "text file with blank lines", "warning",
        "says how many lines were skipped"),
    Row("data_text_invalid_utf8", "data", "text file that is not UTF-8", "CalibrationDataError",
        "names the line; re-save as UTF-8"),
    Row("data_too_few_to_split", "data", "one sample given as --calib", "CalibrationDataError",
        "give more samples or a separate --eval"),
    Row("data_int8_without_calibration", "data", "INT8 target, no --calib, no built-in data",
        "CalibrationDataError", "pass --calib"),
    Row("data_too_few_samples", "data", "fewer calibration samples than recommended",
        "warning", "says the number and the recommended minimum"),
    Row("data_calib_eval_overlap", "data", "--calib and --eval share samples", "warning",
        "says how many samples overlap"),
    # -- targets ---------------------------------------------------------------------------
    Row("target_unknown", "targets", "unknown target name", "UnknownTarget",
        "suggests the closest target"),
    Row("target_runtime_missing", "targets", "runtime not installed", "MissingDependency",
        "`pip install \"modelport[EXTRA]\"`"),
    Row("target_device_missing", "targets", "bundle for a device this machine lacks (CUDA)",
        "TargetUnavailable", "run it where the device is"),
    # -- bundles ---------------------------------------------------------------------------
    Row("bundle_missing", "bundles", "bundle path does not exist", "BundleError",
        "check the path"),
    Row("bundle_no_manifest", "bundles", "folder without manifest.json (half a bundle)",
        "BundleError", "re-export"),
    Row("bundle_manifest_not_json", "bundles", "manifest.json is not JSON", "BundleError",
        "re-export"),
    Row("bundle_file_modified", "bundles", "a bundle file was modified", "BundleError",
        "names the file (sha256 mismatch); re-copy or rebuild"),
    Row("bundle_file_missing", "bundles", "a listed file is missing", "BundleError",
        "names the file; re-copy"),
    Row("bundle_manifest_missing_field", "bundles", "manifest without a required field",
        "BundleError", "names the field"),
    Row("bundle_schema_unknown", "bundles", "schema_version missing, 0 or not a number",
        "BundleError", "re-export"),
    Row("bundle_schema_future", "bundles", "schema_version newer than this modelport",
        "BundleError", "upgrade modelport"),
    Row("bundle_path_traversal", "bundles", "manifest entry with `../`", "BundleError",
        "refused"),
    Row("bundle_absolute_path", "bundles", "manifest entry with an absolute path",
        "BundleError", "refused"),
    Row("bundle_symlink_out", "bundles", "a bundle file replaced by a symlink leaving it",
        "BundleError", "refused"),
    Row("bundle_unlisted_samples", "bundles", "samples file not covered by a checksum",
        "BundleError", "refused"),
    Row("bundle_pickled_samples", "bundles",
        "samples.npz with a pickled object array (checksums forged)", "BundleError",
        "refused, never unpickled"),
    Row("bundle_tar_round_trip", "bundles", "`modelport pack` then verify/load the .tar.gz",
        "works", "same checks as a folder"),
    Row("bundle_tar_traversal", "bundles", ".tar.gz member named `../x`", "BundleError",
        "refused before extraction"),
    Row("bundle_tar_absolute", "bundles", ".tar.gz member with an absolute name",
        "BundleError", "refused before extraction"),
    Row("bundle_tar_symlink", "bundles", ".tar.gz with a symlink out of the bundle",
        "BundleError", "refused before extraction"),
    Row("bundle_tar_hardlink", "bundles", ".tar.gz with a hard link", "BundleError",
        "refused before extraction"),
    Row("bundle_tar_device", "bundles", ".tar.gz with a FIFO/device member", "BundleError",
        "refused before extraction"),
    Row("bundle_tar_corrupt", "bundles", "truncated or non-gzip .tar.gz", "BundleError",
        "re-create it with `modelport pack`"),
    Row("bundle_tar_modified", "bundles", "a file modified inside the .tar.gz", "BundleError",
        "names the file (sha256 mismatch)"),
    Row("bundle_runtime_missing", "bundles", "loading a bundle whose runtime is not installed",
        "TargetUnavailable", "`pip install \"modelport[EXTRA]\"`"),
    Row("bundle_trt_engine_other_gpu", "bundles",
        "cached TensorRT engine from another GPU, TensorRT version or model, or modified",
        "works", "never loaded: rebuilt for this GPU (`modelport build BUNDLE`)"),
    # -- faults ----------------------------------------------------------------------------
    Row("fault_sigint_calibration", "faults", "Ctrl-C during INT8 calibration",
        "exit 130", "no bundle, no temp files"),
    Row("fault_sigint_build", "faults", "Ctrl-C during the build", "exit 130",
        "no bundle, no temp files"),
    Row("fault_sigint_writing", "faults", "Ctrl-C while the bundle is written", "exit 130",
        "no bundle (or the previous one, intact), no temp files"),
    Row("fault_sigterm_calibration", "faults", "SIGTERM during INT8 calibration", "exit 143",
        "no bundle, no temp files"),
    Row("fault_sigterm_build", "faults", "SIGTERM during the build", "exit 143",
        "no bundle, no temp files"),
    Row("fault_sigterm_writing", "faults", "SIGTERM while the bundle is written", "exit 143",
        "no bundle, no temp files"),
    Row("fault_disk_full", "faults", "disk full while writing (a small tmpfs)", "OutputError",
        "free space or choose another --out; nothing left"),
    Row("fault_file_size_limit", "faults", "a write refused by the OS (file size limit)",
        "OutputError", "nothing left behind"),
    Row("fault_output_exists", "faults", "bundle exists already", "BundleExists",
        "pass --force"),
    Row("fault_force_replaces_atomically", "faults", "--force over an existing bundle",
        "works", "readers see the old or the new bundle, never none"),
    Row("fault_out_is_a_file", "faults", "--out names a file", "UsageError",
        "give a directory"),
    Row("fault_pack_exists", "faults", "`modelport pack` onto an existing archive",
        "BundleExists", "pass --force"),
    # -- concurrency -----------------------------------------------------------------------
    Row("concurrent_exports_same_out", "concurrency", "two exports to one --out at once",
        "BundleExists", "one wins, the other fails cleanly; the bundle is complete"),
)

BY_ID = {row.id: row for row in ROWS}
assert len(BY_ID) == len(ROWS), "duplicate catalog ids"

README_BEGIN = "<!-- errors-catalog:begin (generated by python tests/support/error_catalog.py) -->"
README_END = "<!-- errors-catalog:end -->"


def markdown() -> str:
    """The docs/reliability.md table: one line per row, grouped by area."""
    lines = [README_BEGIN, "", "| area | situation | modelport says | what to do |",
             "|---|---|---|---|"]
    for row in ROWS:
        lines.append(f"| {row.area} | {row.situation} | {_says(row.says)} | {row.fix} |")
    lines += ["", README_END]
    return "\n".join(lines)


def _says(says: str) -> str:
    if says in ("works", "warning") or says.startswith("exit"):
        return says
    return f"`{says}` (exit 2)"


if __name__ == "__main__":
    print(markdown())
