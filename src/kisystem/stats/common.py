"""What every figure of ``kisystem stats`` shares: the time window, and how a missing figure is said.

A figure the learning database cannot give yet is never shown as 0: it is ``None`` with the
reason beside it (:func:`no_data`), so that "nothing measured" and "measured zero" stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kisystem.errors import UsageError


def no_data(needs: str) -> str:
    """How a figure without data is shown, in the table and in the JSON."""
    return f"no data yet (needs {needs})"


@dataclass(frozen=True)
class Window:
    """The time span the figures look at: the last ``days`` days up to ``now``, or (``days`` None) all history."""

    now: datetime
    days: int | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError(f"naive datetime {self.now!r}: the learning database stores UTC times")
        if self.days is not None and self.days < 1:
            raise UsageError(f"--days must be at least 1, not {self.days}")

    @property
    def since(self) -> datetime | None:
        return self.now - timedelta(days=self.days) if self.days is not None else None

    @property
    def since_iso(self) -> str:
        """The window's start as the database's ISO text; "" (before every timestamp) for all history."""
        since = self.since
        return since.astimezone(UTC).isoformat(timespec="microseconds") if since is not None else ""

    def to_dict(self) -> dict[str, str | int | None]:
        since = self.since
        return {"days": self.days, "since": since.isoformat() if since else None, "until": self.now.isoformat()}


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)
