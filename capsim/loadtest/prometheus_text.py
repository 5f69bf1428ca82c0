"""Samples from the Prometheus text exposition format (what `/metrics` endpoints return), parsed by
`prometheus_client.parser` (the `loadtest` extra; imported when a scrape is parsed, so capsim's CLI
starts without it).

Only samples are kept (name, labels, value); exemplars and timestamps are dropped: the scraper stamps
every sample with its own clock, the same clock the request records use. A malformed line does not
cost the whole scrape: the text is then parsed line by line and the lines that parse are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _rows(text: str) -> Iterator[tuple[str, str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, format_labels(sample.labels), float(sample.value)


def format_labels(labels: dict[str, Any]) -> str:
    """Labels as one string, `k=v,k=v` sorted by key (the `labels` column of telemetry.parquet)."""
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def parse_samples(text: str) -> list[tuple[str, str, float]]:
    """`(metric name, labels as "k=v,k=v" sorted by key, value)` for every sample line of `text`."""
    try:
        return list(_rows(text))
    except ValueError:
        samples: list[tuple[str, str, float]] = []
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    samples.extend(_rows(line + "\n"))
                except ValueError:
                    continue
        return samples
