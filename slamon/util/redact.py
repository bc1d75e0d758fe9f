"""Keep secrets out of labels, logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "xxxxx"
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)^(.*(token|secret|password|passwd|pwd|key|signature|sig|auth|credential).*)$"
)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """Replace userinfo and secret-looking query values so a URL can be shown. Policy
    documents name URLs in this form (`document_url`): changing it changes the digest
    of every SLA whose target URL has credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else f"{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pieces = []
        for item in query.split("&"):
            key, sep, _value = item.partition("=")
            if sep and _SECRET_QUERY_KEYS.match(key):
                pieces.append(f"{key}={REDACTED}")
            else:
                pieces.append(item)
        query = "&".join(pieces)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL found inside free text (exception messages, log lines)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
