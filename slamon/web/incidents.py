"""/api/v1/incidents: list, post and update incidents (status page, subscribers).

Writing needs credentials: the routes are on the private listener, behind
`server.auth`; without `server.auth` every write is refused (403), since
anyone who can reach the port could otherwise post on the public page.
Errors are `{"error", "status"}` JSON like the rest of the API.
"""

from __future__ import annotations

import time
from typing import Any, cast

from aiohttp import web

from slamon.web.api import PREFIX, ApiError
from slamon.web.status.incidents import STATUSES, IncidentError, IncidentLog, Status

#: incidents listed at most per request
MAX_LIST = 200


def _status(value: Any, default: Status | None = None) -> Status:
    if value is None and default is not None:
        return default
    if value not in STATUSES:
        raise ApiError(400, f"status: must be one of {', '.join(STATUSES)}")
    return cast(Status, value)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = sorted(set(body) - {"title", "message", "status", "targets"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}")
    for key in ("title", "message"):
        if key in body and not isinstance(body[key], str):
            raise ApiError(400, f"{key}: must be a string")
    return body


def incident_routes(log: IncidentLog, writable: bool, known_targets: Any) -> Any:
    """`add(app)`; `known_targets()` gives the ids a posted incident may name."""

    def check_writable() -> None:
        if not writable:
            raise ApiError(403, "posting incidents needs server.auth (a bearer token or "
                                "basic auth) in the config")

    async def list_incidents(request: web.Request) -> web.Response:
        ongoing = request.query.get("ongoing") in ("1", "true")
        try:
            limit = min(MAX_LIST, int(request.query.get("limit", "50")))
        except ValueError:
            raise ApiError(400, "limit: must be a number") from None
        now = time.time()
        return web.json_response({"incidents": [
            i.to_json(now) for i in log.recent(max(limit, 0), ongoing_only=ongoing)]})

    async def get_incident(request: web.Request) -> web.Response:
        inc = await log.get(_id(request))
        if inc is None:
            raise ApiError(404, "no such incident")
        return web.json_response(inc.to_json(time.time()))

    async def post_incident(request: web.Request) -> web.Response:
        check_writable()
        body = await _body(request)
        targets = body.get("targets") or []
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ApiError(400, "targets: must be a list of target ids")
        known = set(known_targets())
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise ApiError(400, f"targets: unknown target {unknown[0]!r}")
        try:
            inc = await log.open(str(body.get("title", "")), str(body.get("message", "")),
                                 tuple(targets), _status(body.get("status"), "investigating"))
        except IncidentError as exc:
            raise ApiError(400, str(exc)) from None
        return web.json_response(inc.to_json(time.time()), status=201,
                                 headers={"Location": f"{PREFIX}/incidents/{inc.id}"})

    async def post_update(request: web.Request) -> web.Response:
        check_writable()
        body = await _body(request)
        if "title" in body or "targets" in body:
            raise ApiError(400, "an update holds status and message only")
        try:
            inc = await log.update(_id(request), _status(body.get("status")),
                                   str(body.get("message", "")))
        except LookupError:
            raise ApiError(404, "no such incident") from None
        except IncidentError as exc:
            raise ApiError(409 if "resolved" in str(exc) else 400, str(exc)) from None
        return web.json_response(inc.to_json(time.time()), status=201)

    def add(app: web.Application) -> None:
        r = app.router
        r.add_get(f"{PREFIX}/incidents", list_incidents)
        r.add_post(f"{PREFIX}/incidents", post_incident)
        r.add_get(f"{PREFIX}/incidents/{{id}}", get_incident)
        r.add_post(f"{PREFIX}/incidents/{{id}}/updates", post_update)

    return add


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 15:
        raise ApiError(404, "no such incident")
    return int(raw)
