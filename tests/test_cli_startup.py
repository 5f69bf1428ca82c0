"""First contact: the CLI starts, answers --help and --version, and runs the README's first command
on the base install alone — checked here by hiding every optional dependency from a subprocess
(CI also runs the README's first command in a fresh base-install venv: .ci/run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What `pip install -e .` does not install (pyproject.toml's extras): a base install must never need them.
OPTIONAL_MODULES = ("scipy", "hdrh", "locust", "gevent", "fastapi", "uvicorn", "prometheus_client", "orjson",
                    "torch", "requests", "pynvml", "ciw", "hypothesis", "pytest", "dask", "distributed")  # fmt: skip

# Heavy modules the CLI loads only when a command runs: `capsim --help` stays a fraction of a second.
HEAVY_MODULES = ("numpy", "pandas", "pyarrow", "numba", "matplotlib", "simpy", "pydantic", "scipy", "yaml")

_BASE_INSTALL = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {OPTIONAL_MODULES!r}

    class _BaseInstall(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _BaseInstall())
    from capsim.cli.main import main
    sys.exit(main(sys.argv[1:]))
    """
)


def run_base_install(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`capsim ARGS` in a subprocess that cannot import any optional dependency, its output a pipe as in a
    script (the test runner may set COLUMNS=80: a user's pipe has no COLUMNS)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-c", _BASE_INSTALL, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False, env=env)  # fmt: skip


def test_cli_start_imports_nothing_heavy() -> None:
    code = "import sys, capsim.cli.main; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found = [m for m in HEAVY_MODULES + OPTIONAL_MODULES if f"'{m}'" in loaded]
    assert found == [], f"imported at CLI start: {found}"


def test_readme_first_command_runs_on_the_base_install(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", readme, re.S)
    assert first is not None
    command = first.group(1).strip()
    assert command.startswith("pip install -e . && capsim simulate "), command
    scenario = command.split("capsim simulate ", 1)[1].split()[0]
    done = run_base_install("simulate", scenario, "--set", "duration_s=40", "--set", "warmup_s=5",
                            "--out", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "latency p99 (ms)" in done.stdout
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["simulate", "--help"], ["sweep", "--help"],
                                  ["calibrate", "--help"], ["validate", "--help"], ["loadtest", "--help"],
                                  ["serve", "--help"], ["profile", "--help"], ["hardware", "--help"],
                                  ["check", "--help"], ["loadtest-finalize", "--help"]])  # fmt: skip
def test_help_and_version_on_the_base_install(args: list[str]) -> None:
    done = run_base_install(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    if args == ["--version"]:
        assert re.fullmatch(r"capsim \S+\n", done.stdout), done.stdout
    else:
        # Placeholders as click names them, never a Python type; nothing cut with an ellipsis in a pipe.
        assert not re.search(r"<(bool|int|float|str|list\[\w+\])>", done.stdout), done.stdout
        assert "…" not in done.stdout, done.stdout


def test_option_placeholders_name_the_value() -> None:
    done = run_base_install("simulate", "--help")
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│ --")}
    assert "INTEGER" in lines["--seed"]
    assert "PATH" in lines["--out"]
    assert "TEXT" in lines["--set"]
    assert not re.search(r"[A-Z]{4,}", lines["--json"].split("print")[0]), lines["--json"]  # a flag takes no value


def test_a_command_that_needs_an_extra_says_which(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    done = run_base_install("calibrate", str(tmp_path / "run"), "-o", str(tmp_path / "p.json"))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "pip install" in done.stderr and "capsim[" in done.stderr, done.stderr
