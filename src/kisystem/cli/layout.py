"""Tables that stay readable in a narrow terminal: a table where it fits, else one record per row.

Rich squeezes a table that is wider than the console by cutting cells (``HumanEval_…``)
and wrapping others over several lines.  :class:`FittedTable` decides at render time,
from the console's actual width: the first of its layouts whose table fits is drawn as
a table; when none fits, each row becomes a record, its key (the task id) whole on a
line of its own and the other columns as ``name: value`` pairs wrapped below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

Cell = str | Text
RECORD_INDENT = 2
UNBOUNDED = 100_000


@dataclass(frozen=True)
class Layout:
    """One way to show the rows: column headers and the cells under them."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


class FittedTable:
    """A table where one of ``layouts`` fits the console; else records of the first layout.

    ``key``: the columns that name a row (joined on the record's first line, never cut).
    """

    def __init__(self, title: str | None, layouts: Sequence[Layout], *, key: Sequence[int] = (0,),
                 caption: str | None = None) -> None:  # fmt: skip
        if not layouts:
            raise ValueError("FittedTable needs at least one layout")
        self.title, self.layouts, self.key, self.caption = title, list(layouts), tuple(key), caption

    def table(self, layout: Layout) -> Table:
        table = Table(title=self.title, caption=self.caption)
        for n, header in enumerate(layout.headers):
            table.add_column(header, no_wrap=n in self.key)
        for row in layout.rows:
            table.add_row(*row)
        return table

    def records(self, width: int) -> Group:
        """Each row as its key on one line and ``name: value`` pairs below, a pair split only when
        it alone is wider than the console."""
        layout = self.layouts[0]
        parts: list[Padding | Text] = [Text(self.title, style="bold")] if self.title else []
        for row in layout.rows:
            parts.append(Text(" ", overflow="fold").join(_text(row[k]) for k in self.key))
            pairs = [Text(f"{h}: ", style="dim") + _text(c)
                     for n, (h, c) in enumerate(zip(layout.headers, row)) if n not in self.key and _text(c).plain]
            parts.extend(Padding(line, (0, 0, 0, RECORD_INDENT)) for line in _packed(pairs, width - RECORD_INDENT))
        if self.caption:
            parts.append(Text(self.caption, style="dim"))
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for layout in self.layouts:
            table = self.table(layout)
            if natural_width(console, options, table) <= options.max_width:
                yield table
                return
        yield self.records(options.max_width)


def natural_width(console: Console, options: ConsoleOptions, table: Table) -> int:
    """The width the table needs to show every cell unwrapped (rich caps a measurement at the console's)."""
    return Measurement.get(console, options.update_width(UNBOUNDED), table).maximum


def _packed(pairs: list[Text], width: int, sep: str = " · ") -> list[Text]:
    """Pairs joined by ``sep`` into lines of at most ``width`` cells, greedily."""
    lines: list[Text] = []
    for pair in pairs:
        if lines and lines[-1].cell_len + len(sep) + pair.cell_len <= width:
            lines[-1].append(sep).append_text(pair)
        else:
            lines.append(pair.copy())
    return lines


def _text(cell: Cell) -> Text:
    if isinstance(cell, Text):
        return cell
    text = Text.from_markup(cell)
    text.overflow = "fold"
    return text
