"""The daemon's log on stderr: one line per event, as text or as JSON (`--log-format json`).

Each line is a message plus named fields (job, run, status, counts). The JSON form is one
object per line, for log shippers; the text form is `time level message key=value ...`.
Fields never hold secrets: requests carry filters and names, never environments' tokens.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any

import msgspec

_json = msgspec.json.Encoder()
LOGGER = "syncd.daemon"


def _time(record: logging.LogRecord) -> str:
    at = datetime.fromtimestamp(record.created, timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "fields", {})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _time(record), "level": record.levelname.lower(),
                "message": record.getMessage(), **_fields(record)}
        return _json.encode(line).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={_text(v)}" for k, v in _fields(record).items())
        return f"{_time(record)[:19]}Z {record.levelname:<7} {record.getMessage()}" + (f" {pairs}" if pairs else "")


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else _json.encode(value).decode()
    return f'"{text}"' if " " in text else text


class Log:
    """`log.info("run finished", job=..., run=...)`: a message and its fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, message: str, **fields: Any) -> None:
        self._logger.info(message, extra={"fields": fields})

    def warning(self, message: str, **fields: Any) -> None:
        self._logger.warning(message, extra={"fields": fields})

    def error(self, message: str, **fields: Any) -> None:
        self._logger.error(message, extra={"fields": fields})

    def flush(self) -> None:
        for handler in self._logger.handlers:
            handler.flush()


def setup(log_format: str) -> Log:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return Log(logger)
