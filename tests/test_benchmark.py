"""The model benchmark script runs end to end and reports sane numbers (tiny configs, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openpi_core.models import benchmark


@pytest.mark.parametrize("model", ["pi05", "pi0_fast"])
def test_benchmark_reports(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--model",
        model,
        "--iters",
        "2",
        "--warmup",
        "1",
        "--max-decoding-steps",
        "4",
        "--num-steps",
        "2",
        "--json",
    ]
    assert benchmark.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == model
    assert result["parameters"] == {"pi05": 576_928, "pi0_fast": 280_064}[model]
    timing = result["sample_actions_ms"]
    assert 0 < timing["min"] <= timing["median"] <= timing["p90"]
    assert result["compile_s"] > 0
    assert result["peak_memory_mb"] > 0
    assert result["cameras"] == 3


def test_benchmark_rejects_bad_prompt_length() -> None:
    with pytest.raises(SystemExit, match="prompt-len"):
        benchmark.main(["--model", "pi0", "--prompt-len", "500"])


def test_training_benchmark_reports(capsys: pytest.CaptureFixture[str]) -> None:
    from openpi_core.training import benchmark as train_benchmark  # noqa: PLC0415

    assert train_benchmark.main(["debug", "--steps", "2", "--warmup", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"] == "debug"
    assert result["batch_size"] == 2
    assert result["step_ms_median"] > 0
    assert result["samples_per_s"] > 0
    assert np.isfinite(result["final_loss"])


def test_serving_benchmark_reports(capsys: pytest.CaptureFixture[str]) -> None:
    from openpi_core.serving import benchmark as serving_benchmark  # noqa: PLC0415

    assert serving_benchmark.main(["--requests", "10", "--clients", "2", "--warmup", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["served"] == 2 + 10 + 2 * 10
    assert result["refused"] == 0
    for run in ("one_client", "concurrent"):
        r = result[run]
        assert 0 < r["overhead_ms_p50"] <= r["overhead_ms_p99"]
        assert r["overhead_ms_p50"] < r["round_trip_ms_p50"]


def test_fullsize_path_at_tiny_size(tmp_path: Path) -> None:
    """The full-size benchmark's path (checkpoint in openpi's layout -> openpi-serve -> an ALOHA and a DROID
    observation) with the debug configs; the full-size run itself is a README command."""
    out = tmp_path / "fullsize.json"
    cmd = [sys.executable, "-m", "openpi_core.serving.fullsize_benchmark", "--size", "tiny", "--workdir", str(tmp_path)]
    result = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = {r["robot"]: r for r in json.loads(out.read_text())}
    assert rows["aloha"]["chunk_shape"] == [10, 14]
    assert rows["droid"]["chunk_shape"] == [10, 8]
    assert all(r["restore_s"] > 0 and r["compile_s"] > 0 and r["server_peak_gib"] > 0 for r in rows.values())
