"""Authentication for slamon's own endpoints: one check for basic and bearer
credentials, compared in constant time; secrets read once at start-up."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from slamon.config.auth import ApiAuth, BasicAuth
from slamon.util.fsutil import read_secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: never behind the API's credentials: probes of slamon itself and the runbooks
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/runbooks"})


def basic_credentials(auth: BasicAuth) -> bytes:
    """`user:password` as a Basic header carries it. OSError if the file is unreadable."""
    password = read_secret(auth.password, auth.password_file) or ""
    return f"{auth.username}:{password}".encode()


def authorized(header: str, basic: bytes | None, bearer: bytes | None) -> bool:
    """Whether an Authorization header carries one of the expected credentials."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic" and basic is not None:
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, basic)
    if scheme == "bearer" and bearer is not None:
        return hmac.compare_digest(value.strip().encode(), bearer)
    return False


def challenge(realm: str, bearer: bool) -> web.Response:
    scheme = f'Bearer realm="{realm}"' if bearer else f'Basic realm="{realm}"'
    return web.Response(status=401, text="authentication required\n",
                        headers={"WWW-Authenticate": scheme})


def api_auth_middleware(auth: ApiAuth, is_open: Callable[[str], bool]) -> Middleware:
    """Requires `auth` on every path but the open ones (and /metrics unless
    `auth.metrics`). Raises OSError when a secret file cannot be read."""
    basic = basic_credentials(auth.basic_auth) if auth.basic_auth is not None else None
    token = read_secret(auth.bearer_token, auth.bearer_token_file)
    bearer = token.encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or is_open(path) or (path == "/metrics" and not auth.metrics):
            return await handler(request)
        if not authorized(request.headers.get("Authorization", ""), basic, bearer):
            return challenge("slamon", bearer is not None)
        return await handler(request)

    return middleware
