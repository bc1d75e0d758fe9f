"""Public status page: HTML, SVG badges and `GET /api/v1/status` (same data).

The daemon calls ``add_routes(app, source, cfg, incidents)`` with itself as
`source` (it has `live`, `tracker`, `config`) and an `IncidentLog` fed from
its EventBus. Routes (with the default path /status):

- ``GET /status``                         the page (server-rendered, no JS, no external assets)
- ``GET /status/badge/{slo}/uptime.svg``  30-day SLI of the SLO ("uptime")
- ``GET /status/badge/{slo}/sli.svg?window=24h|7d|30d``
- ``GET /status/badge/{slo}/state.svg``   current state
- ``GET /api/v1/status``                  JSON
Only SLOs in `public_slos` (default all) are served; others are 404. With
`basic_auth` every route above needs it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from slamon.config.status_page import StatusPageConfig
from slamon.web.auth import authorized, basic_credentials, challenge
from slamon.web.status.data import WINDOWS, StatusData, StatusSource, day_color, fmt_pct
from slamon.web.status.incidents import Incident, IncidentLog
from slamon.web.status.render import BADGE_COLORS, badge, render_page

__all__ = ["Incident", "IncidentLog", "StatusData", "StatusSource", "add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], float]
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


def add_routes(
    app: web.Application,
    source: StatusSource,
    cfg: StatusPageConfig,
    incidents: IncidentLog | None = None,
    clock: Clock = time.time,
) -> StatusData:
    data = StatusData(source, cfg, incidents)
    expected = basic_credentials(cfg.basic_auth) if cfg.basic_auth is not None else None

    def guard(handler: Handler) -> Handler:
        if expected is None:
            return handler

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if not authorized(request.headers.get("Authorization", ""), expected, None):
                return challenge("status", bearer=False)
            return await handler(request)

        return wrapped

    async def page(_request: web.Request) -> web.Response:
        doc = await data.document(clock())
        return web.Response(text=render_page(doc), content_type="text/html",
                            headers={**HEADERS, "Content-Security-Policy": PAGE_CSP})

    async def status_json(_request: web.Request) -> web.Response:
        return web.json_response(await data.document(clock()), headers=HEADERS)

    def _slo_state(request: web.Request) -> tuple[str, object]:
        slo_id = request.match_info["slo"]
        source.live.settle()
        state = source.live.slos.get(slo_id)
        if state is None or not data.public(slo_id):
            raise web.HTTPNotFound(text="no such SLO\n")
        return slo_id, state

    def _svg(text: str) -> web.Response:
        return web.Response(text=text, content_type="image/svg+xml", headers=HEADERS)

    async def sli_badge(request: web.Request) -> web.Response:
        slo_id, _ = _slo_state(request)
        name = request.query.get("window", "30d")
        lengths = dict(WINDOWS)
        if name not in lengths:
            raise web.HTTPBadRequest(text="window must be one of 24h, 7d, 30d\n")
        return _svg(_value_badge(f"SLI {name}", slo_id, lengths[name]))

    async def uptime_badge(request: web.Request) -> web.Response:
        slo_id, _ = _slo_state(request)
        return _svg(_value_badge("uptime 30d", slo_id, 30 * 86400.0))

    def _value_badge(label: str, slo_id: str, length: float) -> str:
        state = source.live.slos[slo_id]
        value = StatusData._sli(state, clock(), length)
        color = BADGE_COLORS[day_color(value, state.slo.objective)]
        return badge(label, fmt_pct(value, 2) if value is not None else "no data", color)

    async def state_badge(request: web.Request) -> web.Response:
        slo_id, _state = _slo_state(request)
        overall, _ = data.slo_state(slo_id, source.live.slos[slo_id])
        color = {"operational": "ok", "partial_outage": "warn", "major_outage": "bad"}.get(
            overall, "none")
        return _svg(badge(slo_id, overall.replace("_", " "), BADGE_COLORS[color]))

    base = cfg.path
    r = app.router
    r.add_get(base, guard(page))
    r.add_get(f"{base}/badge/{{slo}}/sli.svg", guard(sli_badge))
    r.add_get(f"{base}/badge/{{slo}}/uptime.svg", guard(uptime_badge))
    r.add_get(f"{base}/badge/{{slo}}/state.svg", guard(state_badge))
    r.add_get("/api/v1/status", guard(status_json))
    return data
