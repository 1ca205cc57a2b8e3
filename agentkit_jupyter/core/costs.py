"""What a run's model calls cost, and the budget that stops a run mid-call.

Prices come from ``genai-prices`` (a maintained table of providers' prices, bundled,
no network) unless a user-supplied table names the model: that one wins. A model
neither knows has tokens and no cost: never a made-up price.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .llm import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000

    @classmethod
    def parse(cls, raw: ModelPrice | Mapping[str, Any]) -> ModelPrice:
        if isinstance(raw, ModelPrice):
            return raw
        try:
            price = cls(float(raw["input_per_mtok"]), float(raw["output_per_mtok"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                "a price is {'input_per_mtok': dollars, 'output_per_mtok': dollars}"
            ) from exc
        if price.input_per_mtok < 0 or price.output_per_mtok < 0:
            raise ValueError("prices cannot be negative")
        return price


PriceTable = Mapping[str, ModelPrice | Mapping[str, Any]]

# The process-wide table (``set_prices``; the server's ``AgentKitExtension.prices``).
_user_prices: dict[str, ModelPrice] = {}


def set_prices(table: PriceTable | None) -> None:
    """Replace the user-supplied price table: model name -> price per million tokens.
    It wins over the library's prices."""
    parsed = {str(name): ModelPrice.parse(price) for name, price in (table or {}).items()}
    _user_prices.clear()
    _user_prices.update(parsed)


class Pricing:
    """Prices one model's calls: an agent's own table, then the process's, then
    ``genai-prices``; None when none of them knows the model."""

    def __init__(self, model: str, table: PriceTable | None = None) -> None:
        self.model = model
        own = {str(k): ModelPrice.parse(v) for k, v in (table or {}).items()}
        self._price = own.get(model) or _user_prices.get(model)
        self._library_known: bool | None = None if self._price is None else False

    @property
    def known(self) -> bool:
        return self._price is not None or self._library_cost(Usage(1, 1)) is not None

    def cost(self, usage: Usage) -> float | None:
        if self._price is not None:
            return self._price.cost(usage)
        return self._library_cost(usage)

    def _library_cost(self, usage: Usage) -> float | None:
        if self._library_known is False:
            return None
        try:
            from genai_prices import Usage as PriceUsage
            from genai_prices import calc_price
        except ImportError:  # pragma: no cover - a declared dependency
            self._library_known = False
            return None
        try:
            price = calc_price(
                PriceUsage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens),
                model_ref=self.model,
            )
        except LookupError:
            self._library_known = False  # an unknown model stays unknown for this run
            return None
        except Exception:  # a library fault must not end a run: no cost, said once
            log.exception("genai-prices could not price model %r", self.model)
            self._library_known = False
            return None
        self._library_known = True
        return float(price.total_price)


class BudgetExceeded(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Budget:
    """The most a run may use: tokens in and out together, and US dollars."""

    max_tokens: int | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.max_cost is not None and not self.max_cost > 0:
            raise ValueError("max_cost must be more than 0")

    @classmethod
    def parse(cls, raw: Budget | Mapping[str, Any] | None) -> Budget | None:
        if raw is None or isinstance(raw, Budget):
            return raw
        unknown = set(raw) - {"max_tokens", "max_cost"}
        if unknown:
            raise ValueError(f"a budget has max_tokens and max_cost, not {sorted(unknown)}")
        max_tokens = raw.get("max_tokens")
        max_cost = raw.get("max_cost")
        budget = cls(
            None if max_tokens is None else int(max_tokens),
            None if max_cost is None else float(max_cost),
        )
        return None if budget.empty else budget

    @property
    def empty(self) -> bool:
        return self.max_tokens is None and self.max_cost is None

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_cost": self.max_cost}

    def check(self, usage: Usage, cost: float | None) -> None:
        """Raise :class:`BudgetExceeded` when ``usage`` / ``cost`` went past a limit."""
        if self.max_tokens is not None and usage.total_tokens > self.max_tokens:
            raise BudgetExceeded(
                f"The run used {usage.total_tokens} tokens, more than its budget of "
                f"{self.max_tokens}."
            )
        if self.max_cost is not None and cost is not None and cost > self.max_cost:
            raise BudgetExceeded(
                f"The run cost ${cost:.6f}, more than its budget of ${self.max_cost:g}."
            )


class Meter:
    """A run's usage and cost so far, checked against its budget.

    During a model call the endpoint has not said what it used yet: each streamed
    piece counts as one output token and the prompt as at least the last call's
    prompt plus its answer (the conversation only grows), so a budget stops a call
    while it streams; the call's reported usage replaces the estimate at its end.
    """

    def __init__(self, pricing: Pricing, budget: Budget | None = None) -> None:
        self.pricing = pricing
        self.budget = budget
        self.usage = Usage()
        self.cost: float | None = 0.0 if pricing.known else None
        self._last_prompt = 0
        self._last_completion = 0
        # The estimated usage of a call the budget cut (None: no call was cut).
        self.partial: Usage | None = None

    def seed(self, last_call: Usage) -> None:
        """Go on after recorded calls (a fork, a resume): the next prompt is at least
        the last one and its answer. Their usage is not counted: this run did not
        make them."""
        self._last_prompt = last_call.prompt_tokens
        self._last_completion = last_call.completion_tokens

    def estimate(self, streamed_pieces: int) -> Usage:
        """What the run has used counting the call in flight (``streamed_pieces`` so far)."""
        prompt = self._last_prompt + self._last_completion
        return self.usage + Usage(prompt, streamed_pieces)

    def check_before_call(self) -> None:
        """Raise :class:`BudgetExceeded` when the next call cannot fit: its prompt alone
        (at least the last prompt and answer) takes the run past the budget. Nothing is
        counted: the call is not made."""
        if self.budget is None:
            return
        estimate = self.estimate(0)
        try:
            self.budget.check(estimate, self._cost_of(estimate))
        except BudgetExceeded as exc:
            raise BudgetExceeded(
                f"The next model call would take the run past its budget ({exc.message})"
            ) from None

    def check_during_call(self, streamed_pieces: int) -> None:
        """Raise :class:`BudgetExceeded` when the call in flight crossed the budget;
        the call is then counted as its estimate (``partial``)."""
        if self.budget is None:
            return
        estimate = self.estimate(streamed_pieces)
        cost = self._cost_of(estimate)
        try:
            self.budget.check(estimate, cost)
        except BudgetExceeded:
            self.partial = estimate - self.usage
            self.usage, self.cost = estimate, cost
            raise

    def check(self) -> None:
        if self.budget is not None:
            self.budget.check(self.usage, self.cost)

    def add(self, usage: Usage) -> float | None:
        """Count one finished call; returns its cost (None: unknown price)."""
        self.usage = self.usage + usage
        self._last_prompt, self._last_completion = usage.prompt_tokens, usage.completion_tokens
        call_cost = self.pricing.cost(usage)
        if call_cost is None:
            self.cost = None
        elif self.cost is not None:
            self.cost += call_cost
        return call_cost

    def _cost_of(self, usage: Usage) -> float | None:
        """The run's cost at ``usage`` (its calls priced as one: the same model)."""
        return self.pricing.cost(usage) if self.cost is not None else None
