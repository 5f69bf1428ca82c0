"""How numbers are written in an HTML report: each quantity with its unit, to the digits that mean
something (four significant digits for measured figures, cents for money), a dash for a figure that
is not there, and thousands separated so that 19,764,608 requests read at a glance."""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def is_number(value: Any) -> bool:
    """A finite int or float (bool excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 4) -> str:
    """`value` to `digits` significant digits, with thousands separators; integers whole."""
    if not is_number(value):
        return MISSING if value is None or isinstance(value, int | float) else str(value)
    if isinstance(value, int) or (abs(value) >= 10 ** digits and float(value).is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:,.{digits}g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}"


def ms(value: Any) -> str:
    """Milliseconds: `12.8 ms`."""
    return MISSING if not is_number(value) else f"{number(value)} ms"


def usd(value: Any, per: str = "") -> str:
    """Dollars: cents below $1,000 (`$0.80`, `$587.50/month`), whole dollars above."""
    if not is_number(value):
        return MISSING
    text = f"${value:,.2f}" if abs(value) < 1000 else f"${value:,.0f}"
    if 0 < abs(value) < 0.01:
        text = f"${value:.3g}"
    return f"{text}/{per}" if per else text


def percent(share: Any, digits: int = 3) -> str:
    """A share (0..1) as a percentage: `99.87%`."""
    return MISSING if not is_number(share) else f"{100 * share:.{digits}g}%"


def points(difference: Any) -> str:
    """A difference of two shares in percentage points: `25.5 pp` (a change of 58% to 32.5%)."""
    return MISSING if not is_number(difference) else f"{100 * difference:.3g} pp"


def signed_percent(change: Any) -> str:
    """A relative change (−0.22 → `−22.1%`), with its sign always written."""
    return MISSING if not is_number(change) else f"{100 * change:+.1f}%".replace("-", "−")


def rate(value: Any) -> str:
    """Requests per second: `300.6 req/s`."""
    return MISSING if not is_number(value) else f"{number(value)} req/s"
