"""Tasks: created once, run once, streamed to any number of subscribers. No Tornado here."""

from ..protocol import TaskStatus
from .hub import (
    EventNotKeptError,
    HubLimits,
    PublishError,
    Subscription,
    Task,
    TaskFinishedError,
    TaskHub,
    TooManyConnectionsError,
    TooManyRunningTasksError,
    TooManySubscribersError,
    UnknownEventError,
    UnknownTaskError,
)
from .log import EventLog, LogEntry
from .store import StoreError, TaskStore

__all__ = [
    "EventLog",
    "EventNotKeptError",
    "HubLimits",
    "PublishError",
    "LogEntry",
    "StoreError",
    "Subscription",
    "Task",
    "TaskFinishedError",
    "TaskHub",
    "TaskStatus",
    "TaskStore",
    "TooManyConnectionsError",
    "TooManyRunningTasksError",
    "TooManySubscribersError",
    "UnknownEventError",
    "UnknownTaskError",
]
