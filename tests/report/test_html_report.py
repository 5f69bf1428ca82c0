"""`capsim report`: every kind of run folder renders to one self-contained file, two runs compare
side by side with the right differences, and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from capsim.cli.main import main
from capsim.report.html.build import build_report
from capsim.report.html.formats import number, signed_percent, usd
from capsim.report.html.plan_report import pareto_front
from tests.report.conftest import QUICKSTART, SHORT

# Every reference a browser would follow: attribute values (src, href, ...) and CSS url(...).
REFERENCE = re.compile(r"""\b(?:src|href|action|poster|srcset|data)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^"')]*)""",
                       re.IGNORECASE)
LOADING_TAGS = re.compile(r"<(?:script|link|iframe|object|embed)\b|@import", re.IGNORECASE)


def fetched(html: str) -> list[str]:
    """The references in `html` that would load something: anything but data: URLs and #fragments."""
    found = [a or b for a, b in REFERENCE.findall(html)]
    return [ref for ref in found if not ref.startswith(("data:", "#"))] + LOADING_TAGS.findall(html)


def report_of(capsys: pytest.CaptureFixture[str], tmp_path: Path, *folders: Path) -> str:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, folders), "-o", str(out)]) == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().err.replace("\n", "")
    return out.read_text(encoding="utf-8")


def assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert fetched(html) == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*https?:""", html)
    assert "default-src 'none'" in html  # the browser may fetch nothing else either
    for src in re.findall(r'<img[^>]*src="([^"]+)"', html):
        assert src.startswith("data:image/png;base64,")


def images(html: str) -> int:
    return html.count('src="data:image/png;base64,')


def test_the_reference_check_catches_what_it_must() -> None:
    for bad in ('<img src="https://cdn.example/x.png">', "<img src=//cdn.example/x.png>", '<img src="x.png">',
                '<div style="background: url(http://x/y.png)">', '<a href="https://x.org">x</a>',
                "<script>1</script>", "<style>@import 'x.css';</style>"):  # fmt: skip
        assert fetched(bad), bad
    assert fetched('<img alt="a" src="data:image/png;base64,AAAA"><a href="#top">top</a>') == []
    assert fetched("<p>source: https://aws.amazon.com/ec2/pricing/</p>") == []  # a citation in text loads nothing


def test_simulate_report(simulate_dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = simulate_dirs[0]
    html = report_of(capsys, tmp_path, folder)
    assert_self_contained(html)
    summary = json.loads((folder / "summary.json").read_text())
    assert f"<title>quickstart: p99 {number(summary['latency_ms']['p99'])} ms, p99 ≤ 50 ms met" in html
    for heading in ("Answer", "Summary", "Latency tail", "Over time", "Cost", "Provenance"):
        assert f"<h2>{heading}</h2>" in html
    assert images(html) == 2  # the tail and the queue/utilization chart (fixed fleet: no replicas chart)
    # the monthly bill is the hourly rate times 730 h
    assert usd(summary["cost"]["usd_per_hour"] * 730) in html
    # the command line that reproduces the folder, from its marker
    assert f"<pre>capsim simulate {QUICKSTART} --set duration_s=40" in html and f"--out {folder}</pre>" in html


def test_llm_report_judges_ttft_and_tpot(llm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, llm_dir)
    assert_self_contained(html)
    summary = json.loads((llm_dir / "summary.json").read_text())
    assert "capsim simulate run (LLM)" in html
    assert f"TTFT p99 {number(summary['ttft_ms']['p99'])} ms" in html
    assert "TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99" in html
    assert usd(summary["cost"]["usd_per_million_output_tokens"]) + " per million output tokens" in html
    assert images(html) >= 3  # time to first token, end-to-end latency, levels over time


def test_sweep_report_stars_the_chosen_variant(sweep_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, sweep_dir)
    assert_self_contained(html)
    written = json.loads((sweep_dir / "summaries.json").read_text())
    best = written["best"]
    assert best is not None and written["variants"][best]["varied"]["serving.replicas"] == 1  # one L4 suffices
    assert html.count('<tr class="pick">') == 1 and "★" in html
    assert images(html) == 1


def test_two_sweeps_side_by_side(sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    again = tmp_path / "sweep-again"
    shutil.copytree(sweep_dir, again)
    html = report_of(capsys, tmp_path, sweep_dir, again)
    assert_self_contained(html)
    row = re.search(r"<td>★ cost per hour</td>(.*?)</tr>", html)
    assert row is not None and re.findall(r'<td class="num">([^<]*)</td>', row.group(1))[2:] == ["+$0.00/h", "+0.0%"]
    assert images(html) == 1  # both sweeps' variants on one chart


def test_solve_report(solve_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, solve_dir)
    assert_self_contained(html)
    answer = json.loads((solve_dir / "solve.json").read_text())["answer"]
    assert f"{answer['workers']} worker(s) on {answer['hardware']}" in html
    assert images(html) == 1


def test_loadtest_report(loadtest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, loadtest_dir)
    assert_self_contained(html)
    assert "capsim load test" in html and "100 req/s" in html and "250 req/s" in html
    assert "Latency counts from the intended send (coordinated-omission corrected)" in html
    assert images(html) == 2  # the tails and achieved against intended rate


def test_validate_report(validate_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, validate_dir)
    assert_self_contained(html)
    doc = json.loads((validate_dir / "validation.json").read_text())
    assert "Measured against simulated" in html
    error = doc["points"][0]["relative_error"]["latency_ms.p50"]
    assert f"{100 * error:+.1f}%" in html  # the table capsim validate prints
    assert images(html) == 3  # validate's CDF chart, then the measured run's two


def test_plan_report(plan_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, plan_dir)
    assert_self_contained(html)
    doc = json.loads((plan_dir / "plan.json").read_text())
    pick = doc["levels"][0]["pick"]
    assert pick is not None
    for heading in ("Recommendation", "Alternatives", "Cost against latency", "The pick over time", "Traps found",
                    "Assumptions", "Provenance"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in html
    assert html.count('<tr class="pick">') == 1
    assert usd(pick["cost_usd_per_month"]) in html and doc["command"].split()[1] == "plan"


def test_batch_plan_report_marks_one_pick(plan_batch_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, plan_batch_dir)
    assert_self_contained(html)
    doc = json.loads((plan_batch_dir / "plan.json").read_text())
    pick = doc["levels"][0]["pick"]
    assert doc["kind"] == "batch" and pick is not None and len(doc["levels"][0]["candidates"]) > 1
    assert html.count('<tr class="pick">') == 1 and html.count("★ pick") == 1  # its rows have no key
    assert f"the job finishes in {number(pick['makespan_s'] / 3600.0, 3)} h" in html


def test_a_plan_without_a_pick_shows_the_closest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("capsim.cli.plan")
    out = tmp_path / "unmet"
    assert main(["plan", QUICKSTART, "--set", "slo.latency_ms=4", "--max-replicas", "4", "--jobs", "1", *SHORT,
                 "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    html = report_of(capsys, tmp_path, out)
    assert_self_contained(html)
    closest = json.loads((out / "plan.json").read_text())["levels"][0]["closest"]
    assert closest and "<title>quickstart: no configuration meets p99 ≤ 4 ms</title>" in html
    assert '<p class="answer bad">No configuration meets the SLO (p99 ≤ 4 ms)' in html
    assert all(row["reason"] in html for row in closest) and '<tr class="pick">' not in html


def test_pareto_front_keeps_what_nothing_cheaper_beats() -> None:
    points = [(10.0, 50.0), (12.0, 40.0), (12.0, 45.0), (15.0, 42.0), (20.0, 20.0), (25.0, 20.0)]
    assert pareto_front(points) == [(10.0, 50.0), (12.0, 40.0), (20.0, 20.0)]


def test_numbers_carry_units_and_signs() -> None:
    assert number(19_764_608) == "19,764,608" and number(0.50827) == "0.5083" and number(None) == "–"
    assert usd(0.8048, "h") == "$0.80/h" and usd(2160.3) == "$2,160"
    assert signed_percent(-0.2211) == "−22.1%" and signed_percent(0.05) == "+5.0%"


def test_two_runs_side_by_side(simulate_dirs: tuple[Path, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    a, b = simulate_dirs
    html = report_of(capsys, tmp_path, a, b)
    assert_self_contained(html)
    assert "<title>window-2ms vs window-10ms</title>" in html
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    p50_a, p50_b = sa["latency_ms"]["p50"], sb["latency_ms"]["p50"]
    assert p50_b > p50_a  # a longer window waits longer for fuller batches
    row = re.search(r"<td>latency p50</td>(.*?)</tr>", html)
    assert row is not None
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    assert cells == [f"{number(p50_a)} ms", f"{number(p50_b)} ms", f"+{number(p50_b - p50_a)} ms",
                     signed_percent((p50_b - p50_a) / p50_a)]  # fmt: skip
    assert images(html) == 2  # the overlaid tails and the overlaid fleets


def test_a_load_test_beside_its_validated_copy(loadtest_dir: Path, validate_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    html = report_of(capsys, tmp_path, loadtest_dir, validate_dir)
    assert_self_contained(html)
    assert "comparison of capsim load tests" in html.lower()
    assert f"<th class=\"num\">{validate_dir.name} − {loadtest_dir.name}</th>" in html
    assert images(html) == 1  # the two tails overlaid


def test_default_path_and_umask(simulate_dirs: tuple[Path, Path], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o077)
    try:
        assert main(["report", str(simulate_dirs[0])]) == 0
    finally:
        os.umask(old)
    written = tmp_path / "reports" / "window-2ms.html"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [p.name for p in written.parent.iterdir()] == ["window-2ms.html"]  # no temporary left behind


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_folders_capsim_did_not_write_are_refused(tmp_path: Path, simulate_dirs: tuple[Path, Path],
                                                  sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r.html")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a run folder written by capsim" in one_line_error(capsys, ["report", str(empty), "-o", out])
    assert "no such folder" in one_line_error(capsys, ["report", str(tmp_path / "missing"), "-o", out])
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert "is a file" in one_line_error(capsys, ["report", str(a_file), "-o", out])
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"kind": "something-else"}))
    assert "not a run folder written by capsim" in one_line_error(capsys, ["report", str(other), "-o", out])
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "capsim-output.json").write_text("{not json")
    assert "not valid JSON" in one_line_error(capsys, ["report", str(damaged), "-o", out])
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "capsim-output.json").write_text(json.dumps({"format": "capsim-output/1", "command": "serve",
                                                            "files": []}))
    assert "'capsim serve'" in one_line_error(capsys, ["report", str(unknown), "-o", out])
    half = tmp_path / "half"
    half.mkdir()
    (half / "capsim-output.json").write_text((simulate_dirs[0] / "capsim-output.json").read_text())
    assert "without summary.json" in one_line_error(capsys, ["report", str(half), "-o", out])
    assert "one kind" in one_line_error(capsys, ["report", str(simulate_dirs[0]), str(sweep_dir), "-o", out])
    assert "--output" in one_line_error(capsys, ["report", str(simulate_dirs[0]), "-o", str(tmp_path)])
    assert not (tmp_path / "r.html").exists()


def test_build_report_is_a_library_call(simulate_dirs: tuple[Path, Path]) -> None:
    html = build_report([simulate_dirs[1]])
    assert "window-10ms" in html and "max_wait_ms=10" in html
