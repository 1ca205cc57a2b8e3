"""Runs as data: a run's conversation rebuilt from its recorded events, the plan of a
fork (what is copied, what is changed, what goes on live), and a gateway that plays
recorded model turns again (offline, deterministic).

One function, :func:`rebuild`, turns recorded events back into what the engine holds
mid-run; a fork and the resume of an interrupted run both start from it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import EventType, StepEvent
from .llm import LLMError, LLMGateway, Message, ModelRequest, ModelTurn, TokenDelta, ToolCall, Usage

# Events that are the model's answer of a step (its turn is whole once one is there).
_TURN_EVENTS = frozenset({EventType.THOUGHT, EventType.TOOL_CALL, EventType.FINAL_ANSWER})


class ForkError(ValueError):
    """A fork point or an edit that does not fit the run (``invalid_fork``)."""


def arguments_text(arguments: Any) -> str:
    """A tool call's arguments as the model sent them: events keep them parsed (or as
    the raw text when it was not JSON)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


@dataclass(slots=True)
class RecordedTurn:
    """One model call of a run, as its events recorded it."""

    step: int
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    # The streamed pieces, as they were sent (a replay streams them again).
    deltas: list[str] = field(default_factory=list)
    final: bool = False

    def as_model_turn(self) -> ModelTurn:
        return ModelTurn(self.text, tuple(self.calls), self.usage or Usage())


@dataclass(slots=True)
class RunSnapshot:
    """What the engine holds after the recorded events: the conversation after the
    system prompt, the last step, the usage of each recorded model call, and the tool
    calls of the last turn that have no observation (they run live, or are asked)."""

    messages: list[Message]
    step: int = 0
    call_usages: list[Usage] = field(default_factory=list)
    unfinished: list[ToolCall] = field(default_factory=list)
    # Of ``unfinished``: the calls the recorded events never announced (``tool_call``).
    unannounced: list[ToolCall] = field(default_factory=list)
    # Of ``unfinished``: the calls that had started (no result): never re-run unasked.
    interrupted: list[ToolCall] = field(default_factory=list)
    # call_id -> the observation a fork put in place of the recorded one.
    replaced_observations: dict[str, str] = field(default_factory=dict)
    # call ids whose arguments a fork changed.
    edited_calls: set[str] = field(default_factory=set)
    # The recorded run had ended (final answer, error or cancel) within these events.
    ended: bool = False

    @property
    def usage(self) -> Usage:
        total = Usage()
        for usage in self.call_usages:
            total = total + usage
        return total


def recorded_turns(events: Iterable[StepEvent]) -> list[RecordedTurn]:
    """The model calls of a run, oldest first: a step's thought and tool calls, or its
    final answer, with the usage its ``usage`` event (or, in older records, its
    thought) reported. A step whose model call did not finish has no turn."""
    turns: dict[int, RecordedTurn] = {}
    deltas: dict[int, list[str]] = {}
    usages: dict[int, Usage] = {}
    for event in events:
        kind, step, data = event.event_type, event.step, event.data
        if kind is EventType.TOKEN:
            deltas.setdefault(step, []).append(str(data.get("delta") or ""))
            continue
        if kind is EventType.USAGE:
            usages[step] = _usage_of(data)
            continue
        if kind not in _TURN_EVENTS:
            continue
        turn = turns.setdefault(step, RecordedTurn(step))
        if kind is EventType.THOUGHT:
            turn.text = str(data.get("text") or "")
            if step not in usages and isinstance(data.get("usage"), Mapping):
                usages[step] = _usage_of(data["usage"])
        elif kind is EventType.TOOL_CALL:
            turn.calls.append(
                ToolCall(
                    str(data.get("call_id") or ""),
                    str(data.get("name") or ""),
                    arguments_text(data.get("arguments")),
                )
            )
        else:
            turn.text = str(data.get("output") or "")
            turn.final = True
    for step, turn in turns.items():
        turn.usage = usages.get(step)
        turn.deltas = deltas.get(step, [])
    return [turns[step] for step in sorted(turns)]


def _usage_of(data: Mapping[str, Any]) -> Usage:
    def number(key: str) -> int:
        value = data.get(key)
        return int(value) if isinstance(value, int | float) else 0

    return Usage(number("prompt_tokens"), number("completion_tokens"))


def rebuild(user_input: str, events: Sequence[StepEvent]) -> RunSnapshot:
    """The conversation a run had after ``events`` (its recorded events, in order).

    Each whole model turn becomes the assistant message it was, each observation the
    tool message the model read (with the note about edited arguments, as the engine
    wrote it). Calls of the last turn without an observation are ``unfinished``; those
    that had started (a ``tool_call`` and, when asked, an approval, but no result, and
    the run not paused since) are also ``interrupted``. A turn whose model call had not
    finished is dropped.
    """
    messages: list[Message] = [{"role": "user", "content": user_input}]
    snapshot = RunSnapshot(messages)
    turns = {turn.step: turn for turn in recorded_turns(events)}
    observations: dict[str, StepEvent] = {}
    edits: dict[str, dict[str, Any]] = {}
    refused: set[str] = set()
    asked: set[str] = set()
    decided: set[str] = set()
    # Paused at the end (no resume after): the engine pauses only once the calls in
    # flight are done, so a call without a result then had not started.
    paused_at_end = False
    for event in events:
        if event.event_type is EventType.PAUSED:
            paused_at_end = True
        elif event.event_type is EventType.RESUMED:
            paused_at_end = False
        if event.event_type is EventType.OBSERVATION:
            observations[str(event.data.get("call_id"))] = event
        elif event.event_type is EventType.APPROVAL_REQUESTED:
            asked.add(str(event.data.get("call_id")))
        elif event.event_type is EventType.APPROVAL_DECIDED:
            decided.add(str(event.data.get("call_id")))
            decision = str(event.data.get("decision"))
            call_id = str(event.data.get("call_id"))
            if decision == "edited":
                edits[call_id] = event.data
            if decision not in ("approved", "edited"):
                refused.add(call_id)
        elif event.is_terminal:
            snapshot.ended = True
    for step in sorted(turns):
        turn = turns[step]
        if turn.final:
            continue  # an answer ends the run: nothing after it to go on from
        snapshot.step = step
        snapshot.call_usages.append(turn.usage or Usage())
        messages.append(turn.as_model_turn().as_message())
        unfinished = [call for call in turn.calls if call.call_id not in observations]
        for call in turn.calls:
            seen = observations.get(call.call_id)
            if seen is not None:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.call_id,
                        "content": model_text(seen.data, edits.get(call.call_id)),
                    }
                )
        if unfinished:
            # Only the last turn can have them: the engine asks the model again only
            # after every call of a turn has its observation.
            snapshot.unfinished = unfinished
            # Started: not refused, and not still waiting for its decision (that one
            # never ran: it is asked again as before).
            snapshot.interrupted = [
                c
                for c in unfinished
                if not paused_at_end
                and c.call_id not in refused
                and (c.call_id not in asked or c.call_id in decided)
            ]
    for turn in turns.values():
        if turn.final:
            snapshot.call_usages.append(turn.usage or Usage())
    return snapshot


def model_text(observation: Mapping[str, Any], edited: Mapping[str, Any] | None) -> str:
    """What the model read for an observation: its output, and when a person edited
    the call's arguments, the note that says so (``engine`` writes the same)."""
    output = str(observation.get("output") or "")
    if edited is None or observation.get("is_error"):
        return output
    return edited_note(edited.get("by"), edited.get("arguments"), output)


def edited_note(by: Any, arguments: Any, output: str) -> str:
    who = by or "a person"
    return f"(Run with arguments edited by {who}: {render(arguments)})\n{output}"


def render(value: Any) -> str:
    """A tool's result as text for the model."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# -- forks ---------------------------------------------------------------------------


@dataclass(slots=True)
class ForkPlan:
    """A fork: the parent's events to copy (by seq), the input, and the snapshot the
    live part starts from (with the edit applied)."""

    copied: list[int]
    user_input: str
    snapshot: RunSnapshot


def plan_fork(
    user_input: str,
    events: Sequence[tuple[int, StepEvent]],
    at_seq: int,
    *,
    observation: str | None = None,
    arguments: dict[str, Any] | None = None,
    new_input: str | None = None,
    follow_up: str | None = None,
) -> ForkPlan:
    """What a fork of the run ``events`` (``(seq, event)`` pairs, in order) at
    ``at_seq`` copies and where it goes on.

    - ``at_seq`` 0: nothing is copied (with ``new_input``, a new question).
    - ``observation``: ``at_seq`` is an ``observation``; the events before it are copied
      and the call's result is the given text (no tool call).
    - ``arguments``: ``at_seq`` is a ``tool_call``; the events before it are copied and
      the call runs again with these arguments (the rest of its turn runs too).
    - no edit: the events up to ``at_seq`` are copied; a model turn is copied whole
      (a fork at a thought keeps its tool calls). At the final answer, an error or a
      cancel, the events before it are copied: that step is asked again.

    - ``follow_up``: ``at_seq`` is the ``final_answer``; everything is copied, answer
      included, and the conversation goes on with that question (the new task's input).

    Token events of a step whose model call is not in the copy are left out. Calls of
    the copied turn without an observation run live (after approval, if needed).
    """
    edits = [x for x in (observation, arguments, new_input, follow_up) if x is not None]
    if len(edits) > 1:
        raise ForkError(
            "A fork changes one thing: an observation, arguments, the input or a follow-up."
        )
    if follow_up is not None:
        return _plan_follow_up(user_input, events, at_seq, follow_up)
    if new_input is not None and at_seq != 0:
        raise ForkError("A new input forks at the start: at_seq must be 0.")
    if at_seq == 0:
        if observation is not None or arguments is not None:
            raise ForkError("At seq 0 nothing has run yet: only the input can change.")
        question = user_input if new_input is None else new_input
        return ForkPlan([], question, rebuild(question, []))
    by_seq = {seq: event for seq, event in events}
    target = by_seq.get(at_seq)
    if target is None:
        raise ForkError(f"The task has no step event at seq {at_seq}.")
    kind = target.event_type
    if kind is EventType.TOKEN:
        raise ForkError(
            f"Seq {at_seq} is a streamed piece of text: fork at a step (a thought, a tool "
            "call, an observation or the answer)."
        )
    if observation is not None and kind is not EventType.OBSERVATION:
        raise ForkError(f"Seq {at_seq} is a {kind.value}: replace an observation at its seq.")
    if arguments is not None and kind is not EventType.TOOL_CALL:
        raise ForkError(f"Seq {at_seq} is a {kind.value}: edit arguments at a tool_call's seq.")

    if observation is not None or arguments is not None or target.is_terminal:
        cut = at_seq - 1  # the event itself is replaced (or asked again)
    else:
        cut = at_seq
        if kind in (EventType.THOUGHT, EventType.TOOL_CALL):
            # The model's turn is one answer: copy all of its tool calls.
            for seq, event in events:
                if seq > at_seq and event.step == target.step:
                    if event.event_type is EventType.TOOL_CALL:
                        cut = seq
                    elif event.event_type is not EventType.TOKEN:
                        break
    prefix = [(seq, event) for seq, event in events if seq <= cut]
    turn_steps = {e.step for _, e in prefix if e.event_type in _TURN_EVENTS}
    if arguments is not None:
        turn_steps.add(target.step)  # its turn comes from the record, whole
    decided = {
        str(e.data.get("call_id")) for _, e in prefix if e.event_type is EventType.APPROVAL_DECIDED
    }
    answered = {
        str(e.data.get("call_id")) for _, e in prefix if e.event_type is EventType.OBSERVATION
    }
    kept: list[tuple[int, StepEvent]] = []
    for seq, event in prefix:
        if event.event_type in (EventType.TOKEN, EventType.USAGE) and (
            event.step not in turn_steps
        ):
            continue  # the text and usage of a model call the fork makes again
        if event.is_terminal:
            continue
        if event.event_type is EventType.APPROVAL_REQUESTED:
            call_id = str(event.data.get("call_id"))
            if call_id not in decided and call_id not in answered:
                continue  # still undecided: the live part asks again
        kept.append((seq, event))
    snapshot = rebuild(user_input, [event for _, event in kept])
    snapshot.interrupted = []  # a fork is a person's choice: its open calls just run
    if arguments is not None or observation is not None:
        call_id = str(target.data.get("call_id"))
        if arguments is not None:
            _apply_arguments(snapshot, events, target, call_id, arguments)
        else:
            if call_id not in {c.call_id for c in snapshot.unfinished}:
                raise ForkError(f"Seq {at_seq} is not the observation of a call of its step.")
            snapshot.replaced_observations[call_id] = observation or ""
    return ForkPlan([seq for seq, _ in kept], user_input, snapshot)


def _plan_follow_up(
    user_input: str, events: Sequence[tuple[int, StepEvent]], at_seq: int, question: str
) -> ForkPlan:
    """Everything up to the answer copied (the answer too); the model then reads its
    answer and the new question, as in a chat."""
    target = dict(events).get(at_seq)
    if target is None or target.event_type is not EventType.FINAL_ANSWER:
        raise ForkError("A follow-up question goes after the answer: at_seq is the final_answer's.")
    kept = [(seq, event) for seq, event in events if seq <= at_seq]
    snapshot = rebuild(user_input, [event for _, event in kept])
    snapshot.step = target.step
    snapshot.messages.append({"role": "assistant", "content": str(target.data.get("output") or "")})
    snapshot.messages.append({"role": "user", "content": question})
    return ForkPlan([seq for seq, _ in kept], question, snapshot)


def plan_resume(user_input: str, events: Sequence[tuple[int, StepEvent]]) -> ForkPlan:
    """The continuation of an interrupted run: every event copied (but the text of a
    model call that had not finished, which is made again), then on from the last
    completed step. Calls that had started and have no result are ``interrupted``."""
    turn_steps = {e.step for _, e in events if e.event_type in _TURN_EVENTS}
    kept = [
        (seq, event)
        for seq, event in events
        if not event.is_terminal
        and not (
            event.event_type in (EventType.TOKEN, EventType.USAGE) and event.step not in turn_steps
        )
    ]
    return ForkPlan([seq for seq, _ in kept], user_input, rebuild(user_input, [e for _, e in kept]))


def _apply_arguments(
    snapshot: RunSnapshot,
    events: Sequence[tuple[int, StepEvent]],
    target: StepEvent,
    call_id: str,
    arguments: dict[str, Any],
) -> None:
    """The turn of ``target`` as the model sent it, with ``call_id``'s arguments changed.
    The copy holds the turn's calls before it; that one and the later ones are
    announced live, and every call of the turn runs (none has a result yet)."""
    turn = next(t for t in recorded_turns([e for _, e in events]) if t.step == target.step)
    calls = [
        ToolCall(c.call_id, c.name, arguments_text(arguments)) if c.call_id == call_id else c
        for c in turn.calls
    ]
    if snapshot.step != target.step:
        # The copy stops before the turn's first call (and it had no thought).
        snapshot.step = target.step
        snapshot.call_usages.append(turn.usage or Usage())
        snapshot.messages.append(ModelTurn(turn.text, ()).as_message())
    snapshot.messages[-1] = ModelTurn(turn.text, tuple(calls)).as_message()
    position = next(i for i, c in enumerate(calls) if c.call_id == call_id)
    snapshot.unfinished = calls
    snapshot.unannounced = calls[position:]
    snapshot.edited_calls = {call_id}


# -- replay --------------------------------------------------------------------------


class RecordedGateway(LLMGateway):
    """Plays a recorded run's model turns again: turn N on the N-th model call of a
    conversation, streamed as it was, with the usage it reported. No network, no key:
    with the same tools the run reproduces its events; with others it shows what they
    change. A call beyond the recording fails with ``LLMError`` (code ``llm_error``).
    """

    def __init__(self, turns: Sequence[RecordedTurn]) -> None:
        self.turns = list(turns)

    @classmethod
    def from_events(cls, events: Iterable[StepEvent | Mapping[str, Any]]) -> RecordedGateway:
        """From step events, or the wire's ``step`` messages (others are skipped)."""
        steps: list[StepEvent] = []
        for item in events:
            if isinstance(item, StepEvent):
                steps.append(item)
                continue
            data = item.get("data") if item.get("type") == "step" else item
            if isinstance(data, Mapping) and "event_type" in data:
                try:
                    steps.append(StepEvent.from_dict(dict(data)))
                except (KeyError, ValueError):
                    continue
        return cls(recorded_turns(steps))

    @classmethod
    def from_task(cls, task: Any) -> RecordedGateway:
        """From a task: a ``TaskHandle`` (or anything with ``messages()``), or its
        recorded messages."""
        messages = task.messages() if hasattr(task, "messages") else task
        return cls.from_events(messages)

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        index = sum(1 for m in request.messages if m.get("role") == "assistant")
        if index >= len(self.turns):
            raise LLMError(
                f"The recording has {len(self.turns)} model turns; the run asked for more."
            )
        turn = self.turns[index]
        for piece in turn.deltas:
            yield TokenDelta(piece)
        yield turn.as_model_turn()
