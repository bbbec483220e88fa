"""Terminal colour escapes in a library's message never reach the user: the CLI prints every
error (and warning) through modelport.terminal.strip_ansi."""

from __future__ import annotations

from modelport.terminal import exception_line, strip_ansi
from tests.conftest import run_cli

RED, BOLD, RESET = "\x1b[31m", "\x1b[1;4m", "\x1b[0m"


def test_strip_ansi_removes_colours_cursor_moves_and_links():
    text = f"{RED}error{RESET}: {BOLD}x{RESET}\x1b[2K\x1b]8;;http://x\x07link\x1b]8;;\x07 done"
    assert strip_ansi(text) == "error: xlink done"
    assert strip_ansi("plain [31m text") == "plain [31m text"  # no ESC, nothing removed


def test_exception_line_is_one_clean_line_and_reads_the_dynamo_summary():
    exc = RuntimeError(f"{RED}\n\nConstraints violated (L['past']){RESET}\nmore detail\n")
    assert exception_line(exc) == "RuntimeError: Constraints violated (L['past'])"
    report = TypeError("long report\n## Exception summary\n\n" f"{BOLD}the cause{RESET}\nrest")
    assert exception_line(report) == "TypeError: the cause"
    assert len(exception_line(ValueError("x" * 1000))) == 300


def test_cli_error_line_has_no_escape_codes(tmp_path):
    factory = tmp_path / "coloured.py"
    factory.write_text("def boom():\n"
                       f"    raise RuntimeError({RED + 'weights' + RESET + ' are ' + BOLD + 'bad' + RESET!r})\n")
    proc = run_cli("export", f"{factory}:boom", "--target", "onnxruntime:cpu:fp32",
                   "--out", str(tmp_path / "out"), "--no-bench")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "\x1b" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "weights are bad" in lines[0], proc.stderr[-2000:]
