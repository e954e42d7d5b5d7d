"""Logging: one JSON object per line, so decisions can be searched and counted. Never bodies, never keys."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=` for a log call: these become fields of the JSON line (`log.info("decision", extra=fields(...))`)."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, msg, and the fields given with `extra=fields(...)`."""

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


_DECISIONS = logging.getLogger("apiserver_tls_guard")


def decision(**values: Any) -> None:
    """The one line per review, as `log.info("decision", extra=fields(...))` would write it, without the logging
    machinery (record, caller lookup, formatter), which cost more than judging the review. Falls back to the
    logging call when the line is not JSON or info is not enabled."""
    handler = _JSON_HANDLER
    if handler is None or not _DECISIONS.isEnabledFor(logging.INFO):
        _DECISIONS.info("decision", extra=fields(**values))
        return
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    head = f'{{"time": "{now}", "level": "info", "logger": "apiserver_tls_guard", "pid": {_PID}, "msg": "decision", '
    line = head + json.dumps(values, default=str)[1:] + "\n"
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(line)


_JSON_HANDLER: logging.StreamHandler[Any] | None = None
_PID = os.getpid()


def configure(level: str = "info", fmt: str = "json") -> None:
    """Logging for the process: JSON lines (or text) on stderr at `level`; uvicorn's loggers go through it; its access
    log is off.
    """
    global _JSON_HANDLER, _PID
    handler = logging.StreamHandler(sys.stderr)
    _JSON_HANDLER = handler if fmt == "json" else None
    _PID = os.getpid()  # each worker process configures its own
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
