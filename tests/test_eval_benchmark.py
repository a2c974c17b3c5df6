"""benchmarks/eval_speed.py runs end to end (a tiny model, few requests) and both sides score the same numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_eval_speed_benchmark_compares_like_with_like(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_speed.py"
    spec = importlib.util.spec_from_file_location("eval_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--shape", "2x64", "--pairs", "1", "--scale", "0.15", "--json", str(tmp_path / "r.json")])
    assert [row["requests"].split()[0] for row in report["rows"]] == ["loglikelihood", "multiple", "rolling"]
    for row in report["rows"]:
        assert row["n"] > 0 and row["speedup"] > 0
        assert row["max_rel_diff_loglikelihood"] < 1e-5  # the same work on both sides
    assert "speedup" in capsys.readouterr().out and (tmp_path / "r.json").is_file()
