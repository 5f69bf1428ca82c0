"""Bad input never costs a traceback, a hang or the machine's memory: mutated bundled scenarios,
profiles, a trace and the hardware catalogue (tests/bad_input_mutations.py) run through `capsim
check` (and `capsim sweep` for `--vary`) in-process must exit 0 or 2, never 1; on 2, print exactly
one line on stderr naming the file (or the flag); finish within hypothesis's deadline; and stay
inside an address-space limit.

The default run tries every mutation class once plus 40 hypothesis examples (~10 s on one core); the
`slow` variant tries 500 more (~30 s; CI runs it too). benchmarks/bad_input_fuzz.py runs thousands and
prints the table in docs/bad-input.md.
"""

from __future__ import annotations

import contextlib
import io
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsim.cli.main import main
from tests.bad_input_mutations import (
    CATALOGUE,
    CATALOGUE_CLASSES,
    PROFILE_CLASSES,
    PROFILES,
    REPO,
    SCENARIO_CLASSES,
    SCENARIOS,
    TRACE,
    TRACE_CLASSES,
    Case,
    make_case,
    prepare_workdir,
)

HEADROOM_BYTES = 2 * 1024**3
"""Address space a single check may add: the 6 GB a value-sized allocation once took is far past it."""


def _address_space_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder of mutated files, with the address space capped while the module's tests run."""
    root = prepare_workdir(tmp_path_factory.mktemp("fuzz"))
    assert run_case(make_case("scenario", REPO / "scenarios" / "quickstart.yaml", "unknown_key", 0, root))[0] == 2
    if not sys.platform.startswith("linux"):
        yield root
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space_bytes() + HEADROOM_BYTES  # after the imports the first check made
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield root
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_case(case: Case) -> tuple[int, str]:
    """`capsim ARGV` in this process: (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(case.argv))
    return code, err.getvalue()


def assert_handled(case: Case, workdir: Path) -> None:
    """Exit 0 or 2 (2 where the input can never be valid), and on 2 one line naming the file or flag."""
    code, stderr = run_case(case)
    where = f"{case.label} of {case.original} (seed {case.seed}): {' '.join(case.argv)[:300]}"
    assert code in (0, 2), f"{where}: exit {code}: {stderr[-2000:]}"
    if case.must_reject:
        assert code == 2, f"{where}: accepted an input that is never valid"
    if code == 2:
        lines = stderr.splitlines()
        assert len(lines) == 1, f"{where}: {len(lines)} lines on stderr: {stderr[:2000]}"
        line = lines[0]
        assert line.startswith("error: "), f"{where}: {line}"
        named = (case.mutated_file.name, str(workdir), "--set", "--vary")
        assert any(name in line for name in named), f"{where}: the error names no file or flag: {line}"


@pytest.mark.parametrize("mutation", SCENARIO_CLASSES)
def test_each_scenario_mutation_class(workdir: Path, mutation: str) -> None:
    assert_handled(make_case("scenario", REPO / "scenarios" / "quickstart.yaml", mutation, 1, workdir), workdir)


@pytest.mark.parametrize("mutation", PROFILE_CLASSES)
def test_each_profile_mutation_class(workdir: Path, mutation: str) -> None:
    assert_handled(make_case("profile", REPO / "scenarios" / "profiles" / "cnn-cpu.json", mutation, 1, workdir),
                   workdir)  # fmt: skip


@pytest.mark.parametrize("mutation", TRACE_CLASSES)
def test_each_trace_mutation_class(workdir: Path, mutation: str) -> None:
    assert_handled(make_case("trace", TRACE, mutation, 1, workdir), workdir)


@pytest.mark.parametrize("mutation", CATALOGUE_CLASSES)
def test_each_catalogue_mutation_class(workdir: Path, mutation: str) -> None:
    assert_handled(make_case("catalogue", CATALOGUE, mutation, 1, workdir), workdir)


_SETTINGS = {"deadline": 5000, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=28, **_SETTINGS)  # type: ignore[arg-type]
@given(original=st.sampled_from(SCENARIOS), mutation=st.sampled_from(SCENARIO_CLASSES), seed=st.integers(0, 2**20))
def test_mutated_scenarios(workdir: Path, original: Path, mutation: str, seed: int) -> None:
    assert_handled(make_case("scenario", original, mutation, seed, workdir), workdir)


@settings(max_examples=12, **_SETTINGS)  # type: ignore[arg-type]
@given(original=st.sampled_from(PROFILES), mutation=st.sampled_from(PROFILE_CLASSES), seed=st.integers(0, 2**20))
def test_mutated_profiles(workdir: Path, original: Path, mutation: str, seed: int) -> None:
    assert_handled(make_case("profile", original, mutation, seed, workdir), workdir)


@pytest.mark.slow
@settings(max_examples=500, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind_and_original=st.one_of(
        st.tuples(st.just("scenario"), st.sampled_from(SCENARIOS), st.sampled_from(SCENARIO_CLASSES)),
        st.tuples(st.just("profile"), st.sampled_from(PROFILES), st.sampled_from(PROFILE_CLASSES)),
        st.tuples(st.just("trace"), st.just(TRACE), st.sampled_from(TRACE_CLASSES)),
        st.tuples(st.just("catalogue"), st.just(CATALOGUE), st.sampled_from(CATALOGUE_CLASSES)),
    ),
    seed=st.integers(0, 2**30),
)
def test_many_mutated_inputs(workdir: Path, kind_and_original: tuple[str, Path, str], seed: int) -> None:
    kind, original, mutation = kind_and_original
    assert_handled(make_case(kind, original, mutation, seed, workdir), workdir)
