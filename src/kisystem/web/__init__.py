"""The live dashboard and ``/metrics`` over the learning database (read-only).

``kisystem serve`` (:mod:`kisystem.web.server`) runs :func:`kisystem.web.app.create_app` under uvicorn.
Pages are server-rendered Jinja templates (autoescaped); htmx, uPlot and a small script of our own
are served from ``static/`` (vendored, no CDN, no build step).
"""
