"""Logging: one JSON object per line, so decisions can be searched and counted. Never bodies, never keys."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from typing import Any

import orjson


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=` for a log call: these become fields of the JSON line (`log.info("decision", extra=fields(...))`)."""
    return {"fields": values}


_SECOND: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds. The part up to the second is formatted once a second: datetime's formatting
    was a sixth of a decision line's cost."""
    global _SECOND
    second = int(created)
    if _SECOND[0] != second:
        _SECOND = (second, dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_SECOND[1]}.{int((created - second) * 1000):03d}+00:00"


def _json_line(created: float, level: str, logger: str, pid: int | None, msg: str, extra: dict[str, Any]) -> str:
    """The one shape of every log line, from the logging machinery and from `decision` alike."""
    line: dict[str, Any] = {
        "time": _timestamp(created),
        "level": level,
        "logger": logger,
        "pid": pid,  # which worker, with serve --workers N
        "msg": msg,
    }
    line.update(extra)
    # orjson: a fifth of json.dumps' time; keys that are not strings (never ours) are written with str() too.
    return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, msg, and the fields given with `extra=fields(...)`."""

    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None)
        values = dict(extra) if isinstance(extra, dict) else {}
        if record.exc_info and record.exc_info[0] is not None:
            values["error"] = record.exc_info[0].__name__  # the type only: tracebacks can quote request data
        return _json_line(
            record.created, record.levelname.lower(), record.name, record.process, record.getMessage(), values
        )


_DECISIONS = logging.getLogger("apiserver_tls_guard")


def decision(**values: Any) -> None:
    """The one line per review, as `log.info("decision", extra=fields(...))` would write it, without the logging
    machinery (record, caller lookup, formatter), which cost more than judging the review. Falls back to the
    logging call when the line is not JSON or info is not enabled."""
    handler = _JSON_HANDLER
    if handler is None or not _DECISIONS.isEnabledFor(logging.INFO):
        _DECISIONS.info("decision", extra=fields(**values))
        return
    line = _json_line(time.time(), "info", _DECISIONS.name, _PID, "decision", values) + "\n"
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
