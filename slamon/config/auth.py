"""Credentials for slamon's own HTTP endpoints: the API listener and the status page."""

from __future__ import annotations

from pydantic import Field, model_validator

from slamon.util.schema import PathError, Strict, check_secret_source


class BasicAuth(Strict):
    username: str = Field(min_length=1)
    password: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> BasicAuth:
        check_secret_source(self.password, self.password_file, "password", required=True)
        return self


class ApiAuth(Strict):
    """Who may read the API (and, with `metrics: true`, /metrics): a bearer token,
    basic auth, or either of the two. /healthz, /readyz, /runbooks and the status
    page (which has its own `basic_auth`) stay open."""

    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    #: protect /metrics too (Prometheus then needs `authorization` or `basic_auth`)
    metrics: bool = False

    @model_validator(mode="after")
    def _some(self) -> ApiAuth:
        check_secret_source(self.bearer_token, self.bearer_token_file, "bearer_token")
        if self.bearer_token is None and self.bearer_token_file is None \
                and self.basic_auth is None:
            raise PathError((), "set bearer_token (or bearer_token_file) or basic_auth")
        return self
