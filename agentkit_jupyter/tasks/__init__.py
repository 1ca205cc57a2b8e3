"""Tasks: created once, run once, streamed to any number of subscribers. No Tornado here."""

from .hub import (
    HubLimits,
    PublishError,
    Subscription,
    Task,
    TaskFinishedError,
    TaskHub,
    TaskStatus,
    TooManySubscribersError,
    UnknownTaskError,
)
from .log import EventLog, LogEntry

__all__ = [
    "EventLog",
    "HubLimits",
    "PublishError",
    "LogEntry",
    "Subscription",
    "Task",
    "TaskFinishedError",
    "TaskHub",
    "TaskStatus",
    "TooManySubscribersError",
    "UnknownTaskError",
]
