"""Structured logs: one JSON object per line.

Every request writes one access line (method, route template, path, status,
milliseconds, request id, API key id). Secrets never reach a log: the service logs
key *ids* only, never headers or query strings. ``reco serve`` installs
:func:`log_config` in every worker; tests and embedders keep their own logging.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from typing import Any

ACCESS_LOGGER = "reco.service.access"
access_log = logging.getLogger(ACCESS_LOGGER)

# What an API key secret looks like (reco.service.keys): redacted wherever a caller
# put one by mistake (e.g. in a URL path).
_SECRET = re.compile(r"(reco_[0-9a-f]{16}_)[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """``text`` with anything shaped like an API key secret cut to its key id."""
    return _SECRET.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    """Format records as JSON lines: time, level, logger, message and extra fields.

    Extra fields come from ``extra={"fields": {...}}`` on the logging call.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


def log_request(
    *,
    method: str,
    route: str,
    path: str,
    status: int,
    milliseconds: float,
    request_id: str,
    key_id: str | None,
) -> None:
    """Write the access line of one request."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    access_log.info(
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "fields": {
                "method": method,
                "route": route,
                "path": redact(path[:300]),
                "status": status,
                "ms": round(milliseconds, 2),
                "request_id": request_id,
                "key_id": key_id,
            }
        },
    )


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: JSON lines on stderr for reco and uvicorn."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "reco": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
