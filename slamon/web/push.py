"""/api/v1/push/<token>: heartbeat (push) monitors report in.

`GET` or `POST`, so `curl -fsS URL` at the end of a cron job is enough;
`?status=down&msg=...` reports a failure (`status=up`, the default, a
success) and `?duration=1.5` the job's run time in seconds. The token is the
only credential (it is not behind `server.auth`); it never appears in a log
line or a response. Answers: 200 accepted, 404 unknown token, 429 too many
beats (per target) or too many unknown tokens (per process), 400 bad values.
"""

from __future__ import annotations

import math

from aiohttp import web

from slamon.probers.heartbeat import BEATS, Beats
from slamon.web.api import PREFIX, ApiError


def push_routes(app: web.Application, beats: Beats = BEATS) -> None:
    async def push(request: web.Request) -> web.Response:
        status = request.query.get("status", "up")
        if status not in ("up", "down"):
            raise ApiError(400, "status: up or down")
        duration: float | None = None
        if "duration" in request.query:
            try:
                duration = float(request.query["duration"])
            except ValueError:
                raise ApiError(400, "duration: seconds, e.g. 12.5") from None
            if not math.isfinite(duration) or duration < 0:
                raise ApiError(400, "duration: seconds, e.g. 12.5")
        outcome, target = beats.record(request.match_info["token"], status == "up",
                                       request.query.get("msg", ""), duration)
        if outcome == "unknown":
            raise ApiError(404, "unknown push token")
        if outcome == "rate_limited":
            raise ApiError(429, "too many beats: slow down")
        return web.json_response({"accepted": True, "target": target})

    app.router.add_route("GET", f"{PREFIX}/push/{{token}}", push)
    app.router.add_route("POST", f"{PREFIX}/push/{{token}}", push)
