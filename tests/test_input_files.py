"""The rules every input passes (capsim/input_files.py, capsim/input_model.py), one by one, with the
exact one-line messages people see."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from capsim.errors import CapsimInputError
from capsim.input_files import MAX_DEPTH, MAX_YAML_BYTES, load_yaml, parse_value, read_json_file
from capsim.scenario import load_scenario
from capsim.servicetime.profile_format import read_profile

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"


def refusal(text: str) -> str:
    with pytest.raises(CapsimInputError) as info:
        load_yaml(text, "f.yaml")
    return info.value.one_line()


def test_a_key_twice_is_refused_with_both_lines() -> None:
    assert refusal("a: 1\nb: 2\na: 3\n") == "f.yaml: line 3: duplicate key 'a' (first written on line 1)"
    assert refusal("x: {k: 1, k: 2}\n").startswith("f.yaml: line 1: duplicate key 'k'")


def test_merge_keys_may_be_overridden() -> None:
    assert load_yaml("d: &d {a: 1, b: 2}\ne: {<<: *d, a: 5}\n", "f")["e"] == {"a": 5, "b": 2}


def test_yaml_12_exponents_are_floats_and_integers_stay_integers() -> None:
    data = load_yaml("a: 1e3\nb: 1.5e3\nc: -2E-4\nd: 1_000\ne: '1e3'\n", "f")
    assert data == {"a": 1000.0, "b": 1500.0, "c": -0.0002, "d": 1000, "e": "1e3"}
    assert isinstance(data["d"], int)


@pytest.mark.parametrize(("text", "field"), [("a: {b: [1, .inf]}", "a.b[1]"), ("a: -.inf", "a"), ("a: .nan", "a"),
                                             ("a: 1e400", "a")])  # fmt: skip
def test_non_finite_numbers_are_refused_naming_the_field(text: str, field: str) -> None:
    assert refusal(text).startswith(f"f.yaml: {field}: expected a finite number (got ")


def test_integers_beyond_64_bits_are_refused() -> None:
    expected = "f.yaml: a[1]: expected an integer within ±9.22e+18 (64 bits) (got 1e+23)"
    assert refusal("a: [1, 100000000000000000000000]") == expected
    assert load_yaml("a: 9223372036854775807", "f") == {"a": 2**63 - 1}


def test_deep_nesting_alias_bombs_and_recursive_aliases_are_refused_at_once() -> None:
    start = time.perf_counter()
    assert refusal("[" * 100_000 + "]" * 100_000) == f"f.yaml: line 1: nested more than {MAX_DEPTH} levels deep"
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)
    )
    assert "values once aliases are expanded" in refusal(bomb)
    assert "recursive data" in refusal("a: &a [1, *a]\n")
    assert time.perf_counter() - start < 2.0


def test_command_line_values_are_yaml_scalars() -> None:
    assert parse_value("4", "--set") == 4
    assert parse_value("true", "--set") is True
    assert parse_value("1e3", "--set") == 1000.0
    assert parse_value("{kind: gpu}", "--set") == {"kind": "gpu"}
    assert parse_value("a: b: c", "--set") == "a: b: c"  # not YAML: the text itself
    with pytest.raises(CapsimInputError, match=r"^--set: expected a finite number"):
        parse_value(".nan", "--set")


def test_json_refuses_nan_a_key_twice_and_depth(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    for text, expected in [
        ('{"a": [1, NaN]}', "a[1]: expected a finite number (got nan)"),
        ('{"a": 1e400}', "a: expected a finite number (got inf)"),
        ('{"a": 1, "a": 2}', "not valid JSON: duplicate key 'a'"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
        ("[" * 100 + "]" * 100, f"nested more than {MAX_DEPTH} levels deep"),
    ]:
        path.write_text(text)
        with pytest.raises(CapsimInputError) as info:
            read_json_file(path)
        assert info.value.one_line() == f"{path}: {expected}"


@pytest.mark.skipif(not Path("/proc/self/pagemap").is_file(), reason="needs Linux /proc")
def test_reading_stops_at_the_size_bound_whatever_size_the_file_reports() -> None:
    with pytest.raises(CapsimInputError, match=rf"^/proc/self/pagemap: larger than {MAX_YAML_BYTES // 2**20} MiB$"):
        load_scenario("/proc/self/pagemap")  # reports 0 bytes; gigabytes if read whole


def test_scenario_types_are_strict(tmp_path: Path) -> None:
    assert load_scenario(QUICKSTART, ["serving.replicas=4"]).serving.replicas == 4
    assert load_scenario(QUICKSTART, ["workload.arrival.rate_rps=1e3"]).workload.arrival.rate_rps == 1000.0  # type: ignore[union-attr]
    for override, expected in [
        ("serving.replicas=true", "serving.replicas: Input should be a valid integer (got True)"),
        ("serving.replicas='3'", "serving.replicas: Input should be a valid integer (got '3')"),
        ("serving.replicas=1e3", "serving.replicas: expected an integer: write 1000, not a float (got 1000.0)"),
        ("serving.batching.max_wait_ms='1.5'", "serving.batching.max_wait_ms: Input should be a valid number"),
    ]:
        with pytest.raises(CapsimInputError) as info:
            load_scenario(QUICKSTART, [override])
        assert info.value.one_line().startswith(f"{QUICKSTART}: {expected}"), info.value.one_line()
    with pytest.raises(CapsimInputError, match=r"^--set: serving\.batching\.max_wait_ms: expected a finite number"):
        load_scenario(QUICKSTART, ["serving.batching.max_wait_ms=.inf"])


def test_several_errors_are_one_line_with_the_count(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(QUICKSTART.read_text().replace("replicas: 2", "replicas: x").replace("seed: 42", "seed: y"))
    with pytest.raises(CapsimInputError) as info:
        load_scenario(path)
    line = info.value.one_line()
    assert "\n" not in line and line.startswith(f"{path}: seed: ") and line.endswith("(and 1 more)")


def test_profile_latencies_are_named_by_point_and_quantile(tmp_path: Path) -> None:
    data = json.loads((REPO / "scenarios" / "profiles" / "cnn-cpu.json").read_text())
    path = tmp_path / "p.json"
    data["points"][3]["quantiles_ms"][5] = data["points"][3]["quantiles_ms"][4] / 2
    path.write_text(json.dumps(data))
    with pytest.raises(CapsimInputError, match=r"p\.json: points\[3\]\.quantiles_ms\[5\]: expected at least "
                                               r"quantiles_ms\[4\] = "):  # fmt: skip
        read_profile(path)
    data["points"][3]["quantiles_ms"][0] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(CapsimInputError, match=r"points\[3\]\.quantiles_ms\[0\]: expected a latency >= 0 ms"):
        read_profile(path)


def test_an_error_is_always_one_line() -> None:
    error = CapsimInputError("cannot read trace: bad\nline two", source="t.csv", field="workload.arrival")
    assert error.one_line() == "t.csv: workload.arrival: cannot read trace: bad line two"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("service.kind=foo", "service.kind: expected one of 'deterministic', 'exponential', 'lognormal', 'linear', "
                             "'profile', 'llm_linear', 'llm_roofline', 'llm_fitted' (got 'foo')"),
        ("service={}", "service.kind: required field is missing"),
        ("workload.arrival.kind=steps", "workload.arrival.steps: required field is missing (and 1 more)"),
    ],
)  # fmt: skip
def test_the_kind_of_a_section_is_named_as_written(override: str, expected: str) -> None:
    with pytest.raises(CapsimInputError) as info:
        load_scenario(QUICKSTART, [override])
    assert info.value.one_line() == f"{QUICKSTART}: {expected}"
