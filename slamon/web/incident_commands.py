"""`slamon incident open|update|resolve|list`: post to a running slamon's API.

The commands speak HTTP to /api/v1/incidents on the private listener (the
config's `server.external_url`, else `server.listen`, or `--url`), with the
bearer token from $SLAMON_API_TOKEN or `--token-file`. Nothing here touches the
state file: the daemon owns it.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from slamon.util.args import EXIT_FAIL, EXIT_OK, EXIT_USAGE, add_config_argument, error
from slamon.web.status.incidents import STATUSES

TOKEN_ENV = "SLAMON_API_TOKEN"


def _common(p: argparse.ArgumentParser) -> None:
    add_config_argument(p, "config whose server.external_url (or listen) is the API")
    p.add_argument("--url", help="slamon's base URL, e.g. http://127.0.0.1:9115 (over -c)")
    p.add_argument("--token-file", metavar="FILE",
                   help=f"file holding the bearer token (default: ${TOKEN_ENV})")


def configure_open(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--title", required=True, help="what customers see as the headline")
    p.add_argument("--message", required=True, help="the first update's text")
    p.add_argument("--target", action="append", default=[], metavar="ID",
                   help="an affected target (repeat); none = the whole service")
    p.add_argument("--status", choices=STATUSES[:-1], default="investigating")
    p.set_defaults(func=_cmd_open)


def configure_update(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("id", type=int, help="incident id")
    p.add_argument("--status", choices=STATUSES, required=True)
    p.add_argument("--message", required=True)
    p.set_defaults(func=_cmd_update)


def configure_resolve(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("id", type=int, help="incident id")
    p.add_argument("--message", required=True, help="what was done")
    p.set_defaults(func=_cmd_resolve)


def configure_list(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--ongoing", action="store_true", help="only incidents not resolved")
    p.add_argument("--json", action="store_true", help="the API's JSON as it is")
    p.set_defaults(func=_cmd_list)


class _Failed(Exception):
    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def _base(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    from slamon.config.loader import load_config_for_cli

    config = load_config_for_cli(args.config, count=False)
    if config is None:
        raise _Failed("", EXIT_USAGE)
    return config.server.base_url.rstrip("/")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise _Failed(f"--token-file {args.token_file}: {exc.strerror or exc}",
                          EXIT_USAGE) from None
    return os.environ.get(TOKEN_ENV) or None


def _call(args: argparse.Namespace, method: str, path: str,
          body: dict[str, Any] | None = None) -> Any:
    url = _base(args) + "/api/v1/incidents" + path
    headers = {"Accept": "application/json"}
    token = _token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise _Failed(f"{url}: 401: give the API's bearer token (${TOKEN_ENV} or "
                          "--token-file)") from None
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise _Failed(f"{url}: {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"{url}: cannot reach slamon ({reason})") from None


def _run(args: argparse.Namespace, work: Any) -> int:
    try:
        work()
    except _Failed as exc:
        if str(exc):
            error(str(exc))
        return exc.code
    return EXIT_OK


def _show(inc: dict[str, Any]) -> None:
    affects = ", ".join(inc["targets"]) or "whole service"
    print(f"incident {inc['id']}: [{inc['status']}] {inc['title']} ({affects})")


def _cmd_open(args: argparse.Namespace) -> int:
    return _run(args, lambda: _show(_call(args, "POST", "", {
        "title": args.title, "message": args.message, "targets": args.target,
        "status": args.status})))


def _cmd_update(args: argparse.Namespace) -> int:
    return _run(args, lambda: _show(_call(args, "POST", f"/{args.id}/updates", {
        "status": args.status, "message": args.message})))


def _cmd_resolve(args: argparse.Namespace) -> int:
    return _run(args, lambda: _show(_call(args, "POST", f"/{args.id}/updates", {
        "status": "resolved", "message": args.message})))


def _cmd_list(args: argparse.Namespace) -> int:
    def work() -> None:
        doc = _call(args, "GET", "?ongoing=true" if args.ongoing else "")
        if args.json:
            print(json.dumps(doc, indent=2))
            return
        for inc in doc["incidents"]:
            _show(inc)

    return _run(args, work)
