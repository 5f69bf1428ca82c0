"""The project stands alone: every relative link in its Markdown opens (file and heading), every
citation of a doc section from code or data names a heading that exists, every hardware figure names
an original source, and nothing points outside the repository (the design notes and facts the
project was started from now live in docs/design.md and docs/sources.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# `[text](target)` and `![alt](target)`; the target ends at the first space (a title may follow).
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
# A doc section cited from code, data or docs as a path: docs/sources.md#kafka-consumers.
_DOC_CITATION = re.compile(r"\bdocs/([\w.-]+\.md)#([\w-]+)")


def _tracked_files() -> list[Path]:
    """The repository's files as git knows them (tracked and new, not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "scenarios").rglob("*.md"))]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    text = _FENCE.sub("", markdown.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(text):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def relative_links(markdown: Path) -> list[str]:
    """Link targets outside code blocks and inline code that are not web or mail addresses."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", markdown.read_text(encoding="utf-8")))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def broken_links(markdown: Path) -> list[str]:
    """The relative links of `markdown` whose file or heading does not exist."""
    broken = []
    for target in relative_links(markdown):
        path_part, _, anchor = target.partition("#")
        resolved = (markdown.parent / path_part).resolve() if path_part else markdown
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading '{anchor}' in {_rel(resolved)})")
    return broken


def _rel(path: Path) -> str:
    """`path` relative to the repository when inside it, else absolute."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def test_slug_and_link_parsing() -> None:
    """The checker itself: GitHub's slug rules, and code is not mistaken for links."""
    assert github_slug("Streaming consumers (`serving.mode: streaming`)") == "streaming-consumers-servingmode-streaming"
    assert github_slug("Dynamic batching (Triton)") == "dynamic-batching-triton"
    assert github_slug("GPU and CPU figures") == "gpu-and-cpu-figures"


def test_checker_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Real heading\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#real-heading) [gone](c.md) [bad](b.md#nope) `[code](x.md)` "
                    "[web](https://example.com/x.md)\n```\n[fenced](y.md)\n```\n", encoding="utf-8")  # fmt: skip
    missing_heading = f"b.md#nope (no heading 'nope' in {_rel(tmp_path / 'b.md')})"
    assert broken_links(page) == ["c.md (no such file)", missing_heading]


@pytest.mark.parametrize("markdown", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_opens(markdown: Path) -> None:
    assert broken_links(markdown) == []


def test_doc_sections_cited_from_files_exist() -> None:
    """`docs/sources.md#keda` in a docstring, a scenario comment or the catalogue names a real heading."""
    missing = []
    for path in _tracked_files():
        if path.suffix not in {".py", ".yaml", ".yml", ".md", ".toml"}:
            continue
        for doc, anchor in _DOC_CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
            target = ROOT / "docs" / doc
            if not target.exists() or anchor not in anchors(target):
                missing.append(f"{path.relative_to(ROOT)}: docs/{doc}#{anchor}")
    assert missing == []


def test_nothing_points_outside_the_repository() -> None:
    """The design notes and facts folder the project started from are not shipped: no file cites them."""
    outside = ["../" + "shared", "shared/" + "facts", "DESIGN" + ".md"]
    offenders = []
    for path in _tracked_files():
        if path.suffix in {".parquet", ".png", ".csv", ".json", ".pyc"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(ROOT)}: {needle}" for needle in outside if needle in text]
    assert offenders == []


def test_every_catalogue_figure_names_an_original_source() -> None:
    """Each `source:` in the shipped hardware catalogue opens: a web address, or a section of docs/sources.md."""
    data = yaml.safe_load((ROOT / "capsim/hardware/catalogue.yaml").read_text(encoding="utf-8"))
    sources: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "source" and isinstance(value, str):
                    sources.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(data)
    assert len(sources) > 50
    placeholders = {"none recorded in docs/sources.md"}  # entries with no figures, saying so
    unsourced = [s for s in sources if "https://" not in s and not _DOC_CITATION.search(s) and s not in placeholders]
    assert unsourced == []
