"""The dashboard application: routes, templates, static files, the guard around it all.

:func:`create_app` takes an open :class:`~kisystem.web.db.DashboardDb` (the caller owns it and
closes it) so that a missing database is reported before anything listens, and tests hand in a
seeded one with a fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files

import jinja2
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kisystem.store.learning import Clock, utc_now
from kisystem.web import filters, pages_stats, routes
from kisystem.web.answers import AnswerFold
from kisystem.web.db import DashboardDb
from kisystem.web.events import Stream, events_response
from kisystem.web.metrics import metrics_registry
from kisystem.web.pages_improve import ROUTES as IMPROVE_ROUTES
from kisystem.web.pages_models import ROUTES as MODEL_ROUTES
from kisystem.web.pages_queue import ROUTES as QUEUE_ROUTES
from kisystem.web.resources import ResourceSampler
from kisystem.web.security import Guard, new_csrf_token
from kisystem.web.stats_report import StatsSource


@dataclass
class Dashboard:
    """What every handler reads (``request.app.state.dashboard``)."""

    db: DashboardDb
    fold: AnswerFold
    registry: CollectorRegistry
    templates: Jinja2Templates
    csrf_token: str
    clock: Clock
    stream: Stream
    sampler: ResourceSampler  # the machine's resources, sampled while the app runs (its lifespan)
    stats: StatsSource  # seed B's success metrics, kept a while: /stats and /metrics


def create_app(db: DashboardDb, *, clock: Clock = utc_now, token: str | None = None,
               allowed_hosts: frozenset[str] | None = None, stream: Stream | None = None,
               sampler: ResourceSampler | None = None) -> Starlette:
    """The dashboard over ``db``; ``token`` requires it on every request, ``allowed_hosts`` limits ``Host``."""
    fold = AnswerFold()
    csrf = new_csrf_token()
    stats = StatsSource(db, clock)
    dashboard = Dashboard(db, fold, metrics_registry(db, fold, stats), _templates(), csrf, clock, stream or Stream(),
                          sampler=sampler or ResourceSampler(), stats=stats)
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(Guard, csrf_token=csrf, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={404: routes.not_found},
        lifespan=_lifespan,
    )
    app.state.dashboard = dashboard
    return app


def _routes() -> list[Route | Mount]:
    static = StaticFiles(directory=str(files("kisystem.web") / "static"))
    return [
        Route("/", routes.overview_page, name="overview"),
        Route("/overview/live", routes.overview_live, name="overview_live"),
        Route("/runs", routes.runs_list, name="runs"),
        Route("/runs/{run_id}", routes.run_page, name="run"),
        *MODEL_ROUTES,
        *QUEUE_ROUTES,
        *IMPROVE_ROUTES,
        Route("/events", _events, name="events"),
        Route("/stats", pages_stats.stats_page, name="stats"),
        Route("/metrics", routes.metrics, name="metrics"),
        Route("/healthz", routes.healthz, name="healthz"),
        Mount("/static", app=static, name="static"),
    ]


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """While the app runs: sample the machine's resources; compute the success metrics once at the start."""
    dash: Dashboard = app.state.dashboard
    dash.stats.warm()
    async with dash.sampler.running():
        yield


async def _events(request: Request):  # async: the stream lives on the event loop, its reads in threads
    dash: Dashboard = request.app.state.dashboard
    return await events_response(dash.db, request, dash.stream)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.PackageLoader("kisystem.web", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(filters.FILTERS)
    return Jinja2Templates(env=env)
