"""Logging: one JSON object per line, so decisions can be searched and counted. Never bodies, never keys."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=` for a log call: these become fields of the JSON line (`log.info("decision", extra=fields(...))`)."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, with serve --workers N
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__  # the type only: tracebacks can quote request data
        return json.dumps(line, default=str)


def configure(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One decision line per review replaces the access log (which would add client addresses and nothing else).
    logging.getLogger("uvicorn.access").disabled = True
