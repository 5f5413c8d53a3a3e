"""Logging that never blocks the event loop and never shows a secret.

Records go through a queue to a listener thread that does the writing, so a slow stderr
or disk holds up no RPC. Every line passes a filter that masks invite tokens and node
credentials, whatever logged them.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import re
import sys
import time
from typing import Any

SECRET = re.compile(r"(cortex-(?:invite|node)\.[A-Za-z0-9_]+\.)[A-Za-z0-9_\-]+")
BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def redact_text(text: str) -> str:
    return BEARER.sub(r"\1***", SECRET.sub(r"\1***", text))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if record.exc_info:
            # Tracebacks can quote arguments; render and clean them here.
            formatter = logging.Formatter()
            cleaned += "\n" + redact_text(formatter.formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    COLORS = {
        "DEBUG": "\x1b[2m",
        "INFO": "",
        "WARNING": "\x1b[33m",
        "ERROR": "\x1b[31m",
        "CRITICAL": "\x1b[1;31m",
    }

    def __init__(self, color: bool) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if self.color and self.COLORS.get(record.levelname):
            return f"{self.COLORS[record.levelname]}{line}\x1b[0m"
        return line


_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Route the ``cortexctl`` loggers through a queue to stderr in text or JSON."""
    global _listener
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(stream.isatty()))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    queue_handler.addFilter(RedactingFilter())
    root = logging.getLogger("cortexctl")
    root.handlers[:] = [queue_handler]
    root.setLevel(level.upper())
    root.propagate = False
    if _listener is not None:
        _listener.stop()
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    atexit.register(stop_logging)


def stop_logging() -> None:
    """Flush what is queued; called at exit."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
