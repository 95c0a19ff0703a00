"""`mtr validate` and `mtr tools validate`: counts, exit codes and the --json shape."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _paths import FIXTURES

from mtr_hpc.cli import main


def lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def write(path: Path, records: list, raw: list[str] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(r + "\n" for r in raw))
    return path


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    rc = main(argv)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one JSON object, nothing else on stdout
    return rc, json.loads(out)


def test_validate_all_valid(capsys):
    rc, report = run_json(capsys, ["validate", str(FIXTURES / "traces_valid.jsonl"), "--json"])
    assert rc == 0
    assert {k: report[k] for k in ("n", "valid", "invalid", "errors")} == {
        "n": 2,
        "valid": 2,
        "invalid": 0,
        "errors": {},
    }


def test_validate_counts_by_error_type(tmp_path, capsys):
    good, comparison = lines("traces_valid.jsonl")
    no_answer = copy.deepcopy(good)
    no_answer["messages"].pop()
    undeclared = copy.deepcopy(comparison)
    for call in undeclared["messages"][2]["tool_calls"]:
        call["function"]["name"] = "nationality_of"
    path = write(tmp_path / "t.jsonl", [good, no_answer, undeclared, comparison], raw=["{broken", "[]"])
    rc, report = run_json(capsys, ["validate", str(path), "--json"])
    assert rc == 1
    assert report["n"] == 6 and report["valid"] == 2 and report["invalid"] == 4
    # Counts are of traces: two undeclared calls in one trace count once.
    assert report["errors"] == {"bad_field": 1, "bad_json": 1, "no_answer": 1, "undeclared_tool": 1}


def test_validate_max_turns(tmp_path, capsys):
    path = FIXTURES / "traces_valid.jsonl"
    rc, report = run_json(capsys, ["validate", str(path), "--json", "--max-turns", "2"])
    assert rc == 1 and report["errors"] == {"too_many_turns": 2}
    assert main(["validate", str(path), "--max-turns", "0"]) == 2


def test_validate_human_output_on_stderr(tmp_path, capsys):
    good = lines("traces_valid.jsonl")[0]
    good["answer"] = "Secretary of State"
    rc = main(["validate", str(write(tmp_path / "t.jsonl", [good]))])
    captured = capsys.readouterr()
    assert rc == 1 and captured.out == ""
    assert "1 traces, 0 valid, 1 invalid" in captured.err
    assert "answer_mismatch: 1" in captured.err
    assert f"({good['id']})" in captured.err


def test_validate_unreadable_input(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.jsonl"), "--json"]) == 2
    assert "cannot read file" in capsys.readouterr().err
    (tmp_path / "bin.jsonl").write_bytes(b'{"a": "\xff"}\n')
    assert main(["validate", str(tmp_path / "bin.jsonl")]) == 2
    assert main(["validate", str(tmp_path)]) == 2


def test_validate_empty_file(tmp_path, capsys):
    (tmp_path / "e.jsonl").write_text("\n\n")
    rc, report = run_json(capsys, ["validate", str(tmp_path / "e.jsonl"), "--json"])
    assert rc == 0 and report["n"] == 0 and report["invalid"] == 0


def test_tools_validate(tmp_path, capsys):
    tools = lines("tools_valid.jsonl")
    rc, report = run_json(capsys, ["tools", "validate", str(FIXTURES / "tools_valid.jsonl"), "--json"])
    assert rc == 0 and (report["n"], report["valid"], report["invalid"], report["errors"]) == (4, 4, 0, {})

    bad_name = copy.deepcopy(tools[0])
    bad_name["function"]["name"] = "search wikipedia"
    no_desc = copy.deepcopy(tools[3])
    no_desc["function"]["parameters"]["properties"]["a"]["description"] = ""
    path = write(tmp_path / "tools.jsonl", [*tools, tools[1], bad_name, no_desc], raw=["{nope"])
    rc, report = run_json(capsys, ["tools", "validate", str(path), "--json"])
    assert rc == 1 and report["n"] == 8 and report["valid"] == 4 and report["invalid"] == 4
    # A parameter without a description is valid OpenAI: a warning, an error only with --strict.
    assert report["errors"] == {"bad_json": 1, "bad_name": 1, "duplicate_name": 2}
    assert report["warnings"] == {"missing_description": 1}
    rc, report = run_json(capsys, ["tools", "validate", str(path), "--json", "--strict"])
    assert rc == 1 and report["invalid"] == 4 and report["warnings"] == {}
    assert report["errors"] == {"bad_json": 1, "bad_name": 1, "duplicate_name": 2, "missing_description": 1}
    only_warned = write(tmp_path / "described.jsonl", [no_desc])
    assert run_json(capsys, ["tools", "validate", str(only_warned), "--json"])[0] == 0
    assert run_json(capsys, ["tools", "validate", str(only_warned), "--json", "--strict"])[0] == 1


def test_traces_whose_tools_lack_descriptions_are_valid_unless_strict(tmp_path, capsys):
    trace = lines("traces_valid.jsonl")[0]
    trace = copy.deepcopy(trace)
    for tool in trace["tools"]:
        tool["function"].pop("description", None)
    path = write(tmp_path / "t.jsonl", [trace])
    rc, report = run_json(capsys, ["validate", str(path), "--json"])
    assert rc == 0 and report["valid"] == 1 and report["warnings"] == {"missing_description": 1}
    rc, report = run_json(capsys, ["validate", str(path), "--json", "--strict"])
    assert rc == 1 and report["errors"] == {"bad_tool": 1}
    rc = main(["validate", str(path)])
    assert rc == 0 and "warning missing_description: 1 (errors with --strict)" in capsys.readouterr().err


def test_tools_validate_human_and_unreadable(tmp_path, capsys):
    rc = main(["tools", "validate", str(FIXTURES / "tools_valid.jsonl")])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out == "" and "4 tools, 4 valid, 0 invalid" in captured.err
    assert main(["tools", "validate", str(tmp_path / "none.jsonl"), "--json"]) == 2


@pytest.mark.parametrize("argv", [["validate"], ["tools", "validate"]])
def test_console_entry_point(argv):
    target = FIXTURES / ("traces_valid.jsonl" if argv == ["validate"] else "tools_valid.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "mtr_hpc", *argv, str(target), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["invalid"] == 0
