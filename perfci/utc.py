"""The one timestamp form perfci writes (run records, the store, reports): UTC to the millisecond,
`2026-11-26T23:40:00.123Z`. Such strings compare in time order."""

from __future__ import annotations

from datetime import UTC, datetime


def stamp(moment: datetime) -> str:
    """An aware datetime as `2026-11-26T23:40:00.123Z`."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now() -> str:
    """Now, stamped."""
    return stamp(datetime.now(UTC))
