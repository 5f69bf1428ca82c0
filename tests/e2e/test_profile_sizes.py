"""`capsim profile --sizes` measures the transformer at several request lengths and writes a profile
with a size axis that a sized scenario runs on; bad `--sizes` are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from capsim import simulate
from capsim.cli.profile import SIZE_KNOBS
from capsim.servicetime import read_profile
from tests.scenario_helpers import make_scenario

torch = pytest.importorskip("torch")


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


@pytest.mark.e2e
@pytest.mark.slow
def test_profile_with_sizes_has_a_size_axis_that_a_sized_run_reads(tmp_path: Path) -> None:
    path = tmp_path / "transformer-sizes.json"
    done = capsim(
        "profile", "--model", "transformer", "--device", "cpu", "--batch-sizes", "1,4", "--sizes", "4,32",
        "-o", str(path), "--window-s", "0.05", "--warmup-s", "0.05", "--max-windows", "4", "--torch-threads", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "size    4 batch    1:" in done.stdout
    profile = read_profile(path)
    assert profile.size_unit == "tokens" and profile.size_grid() == [4.0, 32.0]
    assert [(p.size, p.batch_size) for p in profile.points] == [(4.0, 1), (4.0, 4), (32.0, 1), (32.0, 4)]
    assert set(profile.provenance["windows"]) == {"size 4 batch 1", "size 4 batch 4", "size 32 batch 1",
                                                  "size 32 batch 4"}  # fmt: skip
    by_key = {(p.size, p.batch_size): p.mean_ms for p in profile.points}
    # Four requests of 32 tokens are 128 tokens of attention and MLP work, eight times 4 x 4.
    assert by_key[32.0, 4] > by_key[4.0, 4]
    scenario = make_scenario(
        "duration_s=20", service={"kind": "profile", "path": str(path), "size_rule": "max"},
        workload={"arrival": {"kind": "poisson", "rate_rps": 20.0},
                  "size": {"unit": "tokens", "distribution": {"kind": "uniform", "low": 4, "high": 32}}},
    )  # fmt: skip
    summary = simulate(scenario).summary
    assert summary["requests"]["completed"] == summary["requests"]["arrived"] > 300


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model", "mlp", "--sizes", "8"], "--sizes: model mlp has no request-size knob"),
        (["--model", "transformer", "--sizes", "8,64"], "--sizes: model transformer takes requests of 1..32 tokens"),
        (["--model", "transformer", "--sizes", "0,8"], "--sizes: expected integers >= 1"),
    ],
)
def test_bad_sizes_are_one_line_and_exit_2(argv: list[str], fragment: str, tmp_path: Path) -> None:
    done = capsim("profile", "-o", str(tmp_path / "p.json"), *argv)
    assert done.returncode == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_size_knobs_capsim_knows_are_the_models(tmp_path: Path) -> None:
    from reference_server.models import MODELS

    knobs = {name: (spec.size_unit, spec.max_size) for name, spec in MODELS.items() if spec.size_unit is not None}
    assert knobs == SIZE_KNOBS


def test_a_batch_of_mixed_lengths_is_padded_to_its_longest() -> None:
    from reference_server.executor import ModelRunner
    from reference_server.models import MODELS, load_model

    spec = MODELS["transformer"]
    runner = ModelRunner(spec, load_model("transformer", torch.device("cpu")), torch.device("cpu"))
    short, long = spec.example_batch(1, seed=1, size=5), spec.example_batch(1, seed=2, size=32)
    outputs = runner.run([short, long])
    assert [o.shape for o in outputs] == [(1, 128), (1, 128)]
    # The long request's answer is its own (padding only touches the short one's positions).
    assert abs(outputs[1] - runner.run([long])[0]).max() < 1e-4
    # A full-length request reads every position, as before the knob existed.
    assert spec.example_batch(2).shape == spec.example_batch(2, size=32).shape == (2, 32)


def test_the_server_takes_shorter_requests_of_a_sized_model() -> None:
    import json

    from reference_server.models import MODELS
    from reference_server.protocol import ProtocolError, parse_v2_infer

    spec = MODELS["transformer"]

    def body(n: int, length: int) -> bytes:
        tensor = {"name": "input", "datatype": "INT64", "shape": [n, length], "data": list(range(n * length))}
        return json.dumps({"inputs": [tensor]}).encode()

    assert parse_v2_infer(body(2, 5), spec, 8).items.shape == (2, 5)
    with pytest.raises(ProtocolError, match=r"expected \[-1, 32\] or \[-1, 1..32\] \(tokens\)"):
        parse_v2_infer(body(1, 33), spec, 8)
    with pytest.raises(ProtocolError, match=r"expected \[-1, 64\] with n >= 1"):  # no knob: the exact shape only
        parse_v2_infer(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8],
                                               "data": [0.0] * 8}]}).encode(), MODELS["mlp"], 8)  # fmt: skip
