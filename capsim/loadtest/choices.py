"""The load tester's choices and defaults that the CLI needs to declare its flags.

Kept apart from `settings.py` (which loads pydantic and the arrival processes) so that `capsim --help`
starts without numpy.
"""

from __future__ import annotations

from typing import Literal

Protocol = Literal["json", "kserve", "generic", "openai"]
Endpoint = Literal["completions", "chat"]  # --protocol openai: /v1/completions or /v1/chat/completions
ArrivalKind = Literal["poisson", "constant", "steps", "diurnal", "trace"]

DEFAULT_SCRAPE_INTERVAL_S = 10.0  # seconds between scrapes of the target (see LoadTestSettings)
