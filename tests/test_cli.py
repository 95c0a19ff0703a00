"""The `mtr` entry point: fast help, no heavy imports, typed errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

from mtr_hpc.cli import main


def test_help_lists_verbs(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for verb in ("validate", "score", "tools"):
        assert verb in out


def test_import_and_help_do_not_load_heavy_libraries():
    code = (
        "import sys, mtr_hpc, mtr_hpc.cli\n"
        "try:\n    mtr_hpc.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'megatron', 'vllm', 'transformer_engine') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out


def test_no_command_is_a_usage_error():
    assert main([]) == 2
