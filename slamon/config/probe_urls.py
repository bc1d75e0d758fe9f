"""`slamon probe` URLs for the kinds that are not HTTP: URL -> a target's config section.

- `dns://SERVER[:PORT]/NAME?type=A&transport=udp|tcp&rcode=NOERROR&rd=0`
- `icmp://HOST?count=3&interval=200ms&loss=0.2` (an IPv6 address in brackets)
- `grpc://HOST:PORT[/SERVICE]?tls=1&server_name=NAME` (`--ca-file` for TLS)
- `tcp://HOST:PORT?tls=1&starttls=smtp|imap|pop3&server_name=NAME` (`--expect`,
  `--ca-file`, `--insecure`)

Pure: the result is validated by the `Target` model like any config, so a bad
value is reported with the key it went to. ValueError names what is wrong in
the URL itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from slamon.config.targets import missing_extra

SCHEMES = ("dns", "icmp", "grpc", "tcp")


def _params(parts: SplitResult, known: dict[str, str]) -> dict[str, str]:
    """URL parameters renamed to their config keys; an unknown one is an error."""
    out: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in known:
            raise ValueError(
                f"{parts.scheme}:// URL: unknown parameter {key!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        out[known[key]] = value
    return out


def _flag(value: str, key: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"URL parameter {key}={value!r}: use 1 or 0")


def _dns(parts: SplitResult, expect: str | None) -> dict[str, Any]:
    if not parts.netloc:
        raise ValueError("dns:// URL has no server: write dns://SERVER/NAME?type=A")
    params = _params(parts, {"type": "query_type", "transport": "transport",
                             "rcode": "valid_rcodes", "rd": "recursion_desired"})
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("dns:// URL has no name to query: write dns://SERVER/NAME?type=A")
    spec: dict[str, Any] = {"server": parts.netloc, "query_name": name, **params}
    if "valid_rcodes" in spec:
        spec["valid_rcodes"] = spec["valid_rcodes"].split(",")
    if "recursion_desired" in spec:
        spec["recursion_desired"] = _flag(spec["recursion_desired"], "rd")
    if expect is not None:
        spec["answer_matches"] = [expect]
    return spec


def _icmp(parts: SplitResult) -> dict[str, Any]:
    host = parts.hostname
    if not host:
        raise ValueError("icmp:// URL has no host: write icmp://HOST or icmp://[IPv6]")
    if parts.path.strip("/"):
        raise ValueError("icmp:// URL takes no path: write icmp://HOST or icmp://[IPv6]")
    params = _params(parts, {"count": "count", "interval": "packet_interval",
                             "loss": "max_packet_loss"})
    return {"host": host, **params}


def _grpc(parts: SplitResult, ca_file: str | None) -> dict[str, Any]:
    host = parts.hostname
    if not host:
        raise ValueError("grpc:// URL has no host: write grpc://HOST:PORT/SERVICE")
    if parts.port is None:
        raise ValueError("grpc:// URL has no port: write grpc://HOST:PORT/SERVICE")
    params = _params(parts, {"tls": "tls", "server_name": "server_name"})
    spec: dict[str, Any] = {"host": host, "port": parts.port,
                            "service": unquote(parts.path.strip("/")), **params}
    if "tls" in spec:
        spec["tls"] = _flag(spec["tls"], "tls")
    if ca_file is not None:
        spec["ca_file"] = ca_file
    return spec


def _tcp(
    parts: SplitResult, expect: str | None, ca_file: str | None, tls_verify: bool
) -> dict[str, Any]:
    host = parts.hostname
    if not host or parts.port is None:
        raise ValueError("tcp:// URL needs a host and a port: write tcp://HOST:PORT")
    if parts.path.strip("/"):
        raise ValueError("tcp:// URL takes no path: write tcp://HOST:PORT?starttls=smtp")
    params = _params(parts, {"tls": "tls", "starttls": "starttls",
                             "server_name": "server_name"})
    spec: dict[str, Any] = {"host": host, "port": parts.port, **params}
    if "tls" in spec:
        spec["tls"] = _flag(spec["tls"], "tls")
    if expect is not None:
        spec["expect"] = expect
    if ca_file is not None:
        spec["ca_file"] = ca_file
    if not tls_verify:
        spec["tls_verify"] = False
    return spec


def probe_spec(
    url: str, expect: str | None = None, ca_file: str | None = None, tls_verify: bool = True
) -> dict[str, Any] | None:
    """`{"kind": ..., kind: {...}}` for a URL of one of `SCHEMES`, else None.

    `expect` is `slamon probe --expect`: for dns a regex some answer record must
    match, for tcp what the server must answer (after STARTTLS, with `starttls`);
    `ca_file` is `--ca-file`, for grpc and tcp with TLS; `tls_verify` is not
    `--insecure`, for tcp.
    """
    scheme, sep, _rest = url.partition("://")
    kind = scheme.lower()
    if not sep or kind not in SCHEMES:
        return None
    missing = missing_extra(kind)
    if missing is not None:
        raise ValueError(missing)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"{kind}:// URL: bad port or IPv6 address") from None
    if kind == "dns":
        spec = _dns(parts, expect)
    elif kind == "icmp":
        spec = _icmp(parts)
    elif kind == "tcp":
        spec = _tcp(parts, expect, ca_file, tls_verify)
    else:
        spec = _grpc(parts, ca_file)
    return {"kind": kind, kind: spec}
