"""A small parser for the Prometheus text exposition format (what `/metrics` endpoints return).

Only samples are needed (name, labels, value), so HELP/TYPE lines are skipped; exemplars and
timestamps are dropped: the scraper stamps every sample with its own clock, the same clock the
request records use.
"""

from __future__ import annotations

import math
import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def parse_value(text: str) -> float:
    """A sample value: a float, `+Inf`, `-Inf` or `NaN`."""
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def parse_samples(text: str) -> list[tuple[str, str, float]]:
    """`(metric name, labels as "k=v,k=v" sorted by key, value)` for every sample line of `text`."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, _, label_text, value_text = match.groups()
        try:
            value = parse_value(value_text)
        except ValueError:
            continue
        labels = ""
        if label_text:
            pairs = sorted(_LABEL.findall(label_text))
            labels = ",".join(f"{k}={v}" for k, v in pairs)
        samples.append((name, labels, value))
    return samples
