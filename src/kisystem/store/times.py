"""How the learning database writes times: fixed-width ISO-8601 in UTC, so string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(dt: datetime) -> str:
    """``dt`` as the database stores it; a naive datetime is refused (it would be read as UTC silently)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: the learning database stores UTC times")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def iso_opt(dt: datetime | None) -> str | None:
    return iso(dt) if dt is not None else None


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def parse_opt(text: str | None) -> datetime | None:
    return parse(text) if text is not None else None
