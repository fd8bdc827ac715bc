"""The Models and Domains pages.

What they need beyond the database is set on the app by :func:`configure` (``kisystem serve`` does):
the inventory whose backends are asked which models they have loaded, and the configuration whose
meta-supervisor weights rank the domains.  A dashboard created without them (tests, an older caller)
shows every loaded state as "unknown" and ranks with the default weights.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kisystem.config import OptimizationConfig
from kisystem.models.inventory import Inventory
from kisystem.routing.meta import BIAS_MIN_RATE, BIAS_MIN_RUNS
from kisystem.web import domains, models
from kisystem.web.backends import BackendProbe
from kisystem.web.routes import _dash, _render


def configure(app: Starlette, *, inventory: Inventory | None = None, config: OptimizationConfig | None = None) -> None:
    """Give the pages the fleet to probe and the configuration the meta-supervisor ranks with."""
    app.state.backend_probe = BackendProbe(inventory) if inventory is not None else None
    app.state.meta_config = config


def models_page(request: Request) -> Response:
    dash = _dash(request)
    with domains.meta_supervisor(dash.db, dash.clock, _config(request)) as meta:
        evidence = meta.evidence()
    usage = models.usage_by_pair(evidence, dash.fold.by_domain(dash.db))
    health = models.health_trends(dash.db)
    probe: BackendProbe | None = getattr(request.app.state, "backend_probe", None)
    rows = models.model_rows(usage, health, probe.states() if probe else {})
    context = {"rows": rows, "probed": probe is not None,
               "success_chart": models.success_chart(dash.db, dash.clock()),
               "health_chart": models.health_chart(dash.db, health), "chart_days": models.CHART_DAYS,
               "chart_runs": models.CHART_RUNS}  # fmt: skip
    return _render(request, "models.html", context)


def domains_page(request: Request) -> Response:
    dash = _dash(request)
    with domains.meta_supervisor(dash.db, dash.clock, _config(request)) as meta:
        ranked = domains.priorities(meta)
        context = {"priorities": ranked, "bias": domains.model_bias(meta), "enabled": meta.enabled,
                   "weights": meta.weights}  # fmt: skip
    curve = domains.learning_curve(dash.db, {p.domain: p.run_count for p in ranked})
    context |= {"factors": domains.FACTORS, "curve": curve, "curve_window": domains.CURVE_WINDOW,
                "curve_runs": domains.CURVE_RUNS, "bias_min_rate": BIAS_MIN_RATE, "bias_min_runs": BIAS_MIN_RUNS}
    return _render(request, "domains.html", context)


def _config(request: Request) -> OptimizationConfig | None:
    return getattr(request.app.state, "meta_config", None)


ROUTES: list[Route] = [Route("/models", models_page, name="models"), Route("/domains", domains_page, name="domains")]
