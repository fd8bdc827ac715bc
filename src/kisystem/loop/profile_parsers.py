"""Parsers that turn each profiler's output into named metrics and hot spots.

callgrind (instructions, cache misses, hot functions and lines), ``perf stat`` counters,
cProfile statistics, and nsys / ncu CSV reports for CUDA kernels.  Kernels whose names
start with ``ref_`` belong to the reference implementation and are reported apart.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REFERENCE_KERNEL_PREFIX = "ref_"
HOTSPOTS = 3
CANDIDATE_ROOT, REFERENCE_ROOT = "kisystem_bench_candidate", "kisystem_bench_reference"
_NCU_METRICS = ("gpu__time_duration.sum", "sm__warps_active.avg.pct_of_peak_sustained_active",
                "dram__throughput.avg.pct_of_peak_sustained_elapsed")
_TIME_UNITS = {"ns": 1e-9, "nsecond": 1e-9, "us": 1e-6, "usecond": 1e-6, "ms": 1e-3, "msecond": 1e-3,
               "s": 1.0, "second": 1.0}

@dataclass(frozen=True)
class Hotspot:
    """A function, source line or kernel and its share of the candidate's cost (0..1)."""

    name: str
    share: float


@dataclass(frozen=True)
class ToolReport:
    metrics: dict[str, float] = field(default_factory=dict)
    hotspots: tuple[Hotspot, ...] = ()


def _is_root(name: str, root: str) -> bool:
    return name == root or name.startswith(root + "(")


class _CallgrindParser:
    """Self and inclusive costs per function, and self instructions per source line."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.positions = 1
        self.names: dict[tuple[str, str], str] = {}
        self.self_cost: dict[str, list[int]] = defaultdict(list)
        self.calls: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.lines: dict[tuple[str, str, int], int] = defaultdict(int)
        self.summary: list[int] = []
        self.fn, self.fl, self.file, self.callee = "???", "???", "???", ""
        self.in_call, self.last = False, [0, 0]

    def feed(self, text: str) -> _CallgrindParser:
        for line in text.splitlines():
            if line and line[0] in "0123456789+-*":
                self._cost(line.split())
            elif "=" in line and not line.startswith("#"):
                self._spec(*line.split("=", 1))
            elif line.startswith(("events:", "positions:", "summary:", "totals:")):
                self._header(line)
        return self

    def _header(self, line: str) -> None:
        key, _, rest = line.partition(":")
        if key == "events":
            self.events = rest.split()
        elif key == "positions":
            self.positions = max(1, len(rest.split()))
        elif not self.summary:
            self.summary = [int(v) for v in rest.split()]

    def _spec(self, key: str, value: str) -> None:
        if key == "fn":
            self.fn, self.file = self._name("fn", value), self.fl  # fi=/fe= last until the next fn=
        elif key == "cfn":
            self.callee = self._name("fn", value)
        elif key == "fl":
            self.fl = self.file = self._name("fl", value)
        elif key in ("fi", "fe"):
            self.file = self._name("fl", value)
        elif key in ("cfi", "cfl"):
            self._name("fl", value)
        elif key in ("ob", "cob"):
            self._name("ob", value)
        elif key == "calls":
            self.in_call = True

    def _name(self, kind: str, value: str) -> str:
        found = re.match(r"\((\d+)\)\s*(.*)", value.strip())
        if not found:
            return value.strip()
        key, name = (kind, found.group(1)), found.group(2)
        if name:
            self.names[key] = name
        return self.names.get(key, name or "???")

    def _cost(self, parts: list[str]) -> None:
        for i in range(min(self.positions, len(parts))):
            self.last[i] = _position(parts[i], self.last[i])
        costs = [int(v) for v in parts[self.positions:] if v.isdigit()]
        if self.in_call:
            _add(self.calls[self.fn][self.callee], costs)
            self.in_call = False
            return
        _add(self.self_cost[self.fn], costs)
        if costs:
            self.lines[(self.fn, self.file, self.last[self.positions - 1])] += costs[0]

    def inclusive(self, fn: str) -> list[int]:
        total = list(self.self_cost.get(fn, []))
        for cost in self.calls.get(fn, {}).values():
            _add(total, cost)
        return total

    def subtree(self, root: str) -> set[str]:
        seen, todo = {root}, [root]
        while todo:
            for callee in self.calls.get(todo.pop(), {}):
                if callee not in seen:
                    seen.add(callee)
                    todo.append(callee)
        return seen

    def total(self) -> list[int]:
        if self.summary:
            return self.summary
        total: list[int] = []
        for cost in self.self_cost.values():
            _add(total, cost)
        return total


def _position(token: str, previous: int) -> int:
    if token == "*":
        return previous
    if token[0] in "+-":
        return previous + int(token, 0)
    return int(token, 0)


def _add(total: list[int], costs: list[int]) -> None:
    total.extend([0] * (len(costs) - len(total)))
    for i, value in enumerate(costs):
        total[i] += value


def _event_metrics(events: list[str], cost: list[int], prefix: str = "") -> dict[str, float]:
    values = dict(zip(events, cost))
    found = {f"{prefix}instructions": float(values.get("Ir", 0))}
    if "D1mr" in events:
        found[f"{prefix}l1_misses"] = float(values.get("D1mr", 0) + values.get("D1mw", 0))
        found[f"{prefix}ll_misses"] = float(values.get("DLmr", 0) + values.get("DLmw", 0))
    return found


def parse_callgrind(text: str) -> ToolReport:
    """Instructions (and cache misses with --cache-sim) of the candidate and reference
    roots of a pack harness, or of the whole program; hot functions and source lines."""
    cg = _CallgrindParser().feed(text)
    functions = set(cg.self_cost) | set(cg.calls)
    roots = {r: next((fn for fn in functions if _is_root(fn, r)), None) for r in (CANDIDATE_ROOT, REFERENCE_ROOT)}
    candidate = roots[CANDIDATE_ROOT]
    if candidate is None:
        whole = cg.total()
        return ToolReport(_event_metrics(cg.events, whole), _callgrind_hotspots(cg, functions, whole))
    metrics = _event_metrics(cg.events, cg.inclusive(candidate))
    if roots[REFERENCE_ROOT]:
        metrics.update(_event_metrics(cg.events, cg.inclusive(roots[REFERENCE_ROOT]), "reference_"))
    fns = cg.subtree(candidate) - {candidate}
    return ToolReport(metrics, _callgrind_hotspots(cg, fns, cg.inclusive(candidate)))


def _callgrind_hotspots(cg: _CallgrindParser, fns: set[str], whole: list[int]) -> tuple[Hotspot, ...]:
    total = whole[0] if whole and whole[0] else 0
    if not total:
        return ()
    by_fn = sorted(((cg.self_cost[f][0], f) for f in fns if cg.self_cost.get(f)), reverse=True)[:HOTSPOTS]
    by_line = sorted(((ir, f"{Path(file).name}:{line} in {fn}") for (fn, file, line), ir in cg.lines.items()
                      if fn in fns and file != "???" and line > 0), reverse=True)[:HOTSPOTS]
    spots = [Hotspot(name, ir / total) for ir, name in by_line] or [Hotspot(fn, ir / total) for ir, fn in by_fn]
    return tuple(s for s in spots if s.share >= 0.01)


def parse_perf_stat(text: str) -> ToolReport:
    """``perf stat -x,`` lines; counters the kernel did not count are left out."""
    metrics: dict[str, float] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 3 or not row[2]:
            continue
        event = row[2].split(":")[0].replace("-", "_")
        try:
            value = float(row[0])
        except ValueError:
            continue  # <not supported>, <not counted>
        if event == "task_clock":
            metrics["perf_task_clock_s"] = value * (1e-3 if row[1] == "msec" else 1.0)
        else:
            metrics[f"perf_{event}"] = value
    return ToolReport(metrics)


def parse_cprofile(text: str) -> ToolReport:
    """``python -m cProfile -s tottime`` output: totals, bench roots, hot functions."""
    metrics: dict[str, float] = {}
    summary = re.search(r"(\d+) function calls(?: \(\d+ primitive calls\))? in ([\d.]+) seconds", text)
    if summary:
        metrics.update(function_calls=float(summary.group(1)), profile_s=float(summary.group(2)))
    rows = _cprofile_rows(text)
    for name, (_, cumtime) in rows.items():
        for root, key in ((CANDIDATE_ROOT, "profiled_s"), (REFERENCE_ROOT, "reference_profiled_s")):
            if name.endswith(f"({root})"):
                metrics[key] = cumtime
    whole = metrics.get("profiled_s") or metrics.get("profile_s") or 0.0
    ranked = sorted(((tot, name) for name, (tot, _) in rows.items()), reverse=True)[:HOTSPOTS]
    spots = tuple(Hotspot(name, tot / whole) for tot, name in ranked if whole and tot / whole >= 0.01)
    return ToolReport(metrics, spots)


def _cprofile_rows(text: str) -> dict[str, tuple[float, float]]:
    rows: dict[str, tuple[float, float]] = {}
    header = text.find("filename:lineno(function)")
    for line in text[header:].splitlines()[1:] if header >= 0 else []:
        parts = line.split(None, 5)
        if len(parts) < 6:
            if rows:
                break
            continue
        try:
            rows[parts[5]] = (float(parts[1]), float(parts[3]))
        except ValueError:
            break
    return rows


def parse_nsys(text: str) -> ToolReport:
    """``nsys stats --format csv -r cuda_gpu_kern_sum``: GPU time per kernel."""
    kernels: dict[str, float] = {}
    launches = 0.0
    for row in _csv_from(text, lambda line: "Total Time (ns)" in line and "Name" in line):
        try:
            kernels[row["Name"]] = kernels.get(row["Name"], 0.0) + _number(row["Total Time (ns)"]) * 1e-9
            launches += _number(row.get("Instances", "0"))
        except (KeyError, ValueError):
            continue
    metrics = _kernel_split(kernels)
    if kernels:
        metrics["kernel_launches"] = launches
    return ToolReport(metrics, _kernel_hotspots(kernels))


def parse_ncu(text: str) -> ToolReport:
    """``ncu --csv``: kernel time, achieved occupancy and DRAM throughput per launch."""
    launches: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in _csv_from(text, lambda line: line.startswith('"ID"')):
        try:
            launches[(row["ID"], row["Kernel Name"])][row["Metric Name"]] = _ncu_value(row)
        except (KeyError, ValueError):
            continue
    kernels: dict[str, float] = defaultdict(float)
    weighted: dict[str, list[float]] = {"occupancy_pct": [0.0, 0.0], "memory_throughput_pct": [0.0, 0.0]}
    for (_, name), values in launches.items():
        duration = values.get(_NCU_METRICS[0], 0.0)
        kernels[name] += duration
        if not _is_reference_kernel(name):
            for key, metric in zip(weighted, _NCU_METRICS[1:]):
                if metric in values:
                    weighted[key][0] += values[metric] * duration
                    weighted[key][1] += duration
    metrics = _kernel_split(dict(kernels))
    metrics.update({k: s / w for k, (s, w) in weighted.items() if w > 0})
    return ToolReport(metrics, _kernel_hotspots(dict(kernels)))


def _ncu_value(row: Mapping[str, str]) -> float:
    value = _number(row["Metric Value"])
    unit = (row.get("Metric Unit") or "").strip()
    return value * _TIME_UNITS[unit] if unit in _TIME_UNITS else value


def _csv_from(text: str, is_header: Callable[[str], bool]) -> list[dict[str, str]]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if is_header(line)), None)
    if start is None:
        return []
    body = []
    for line in lines[start:]:
        if not line.strip():
            break
        body.append(line)
    return list(csv.DictReader(io.StringIO("\n".join(body))))


def _number(text: str) -> float:
    return float(text.replace(",", "").strip())


def _is_reference_kernel(name: str) -> bool:
    return name.removeprefix("void ").startswith(REFERENCE_KERNEL_PREFIX)


def _kernel_split(kernels: Mapping[str, float]) -> dict[str, float]:
    if not kernels:
        return {}
    found = {"kernel_time_s": sum(t for n, t in kernels.items() if not _is_reference_kernel(n))}
    reference = [t for n, t in kernels.items() if _is_reference_kernel(n)]
    if reference:
        found["reference_kernel_time_s"] = sum(reference)
    return found


def _kernel_hotspots(kernels: Mapping[str, float]) -> tuple[Hotspot, ...]:
    mine = {n: t for n, t in kernels.items() if not _is_reference_kernel(n)}
    total = sum(mine.values())
    ranked = sorted(mine.items(), key=lambda kv: -kv[1])[:HOTSPOTS]
    return tuple(Hotspot(name.split("(")[0], t / total) for name, t in ranked) if total > 0 else ()


PARSERS: dict[str, Callable[[str], ToolReport]] = {
    "callgrind": parse_callgrind, "perf": parse_perf_stat, "cprofile": parse_cprofile,
    "nsys": parse_nsys, "ncu": parse_ncu,
}


def parse_tool_output(tool: str, text: str) -> ToolReport:
    """Named metrics and hot spots from one full profiler's output."""
    return PARSERS[tool](text)
