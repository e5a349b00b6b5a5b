"""The reasoning budget: which inputs of a batch may think, and a ledger of what was spent.

Selection (deterministic): in ``adaptive`` mode the candidates are the inputs whose gate
score is >= ``threshold``; in ``always`` mode every input. Candidates are taken in
descending score (ties by position) while two caps hold:

- ``max_think_ratio``: items thought / items seen, counted cumulatively over the ledger
  including this batch, never exceeds the ratio;
- ``token_budget``: thought tokens spent plus ``max_thought_tokens`` reserved for every
  selected input never exceeds the budget, so the actual spend cannot overshoot it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

BudgetMode = Literal["adaptive", "always", "never"]
MODES: tuple[BudgetMode, ...] = get_args(BudgetMode)


def check_threshold(value: float, what: str = "threshold") -> None:
    """Raise ``ValueError`` unless ``value`` is a gate threshold: within 0..1 (a hair above 1,
    where ``calibrate`` lets nothing think, included) or infinite."""
    if not 0.0 <= value <= 1.0 + 1e-9 and not math.isinf(value):
        raise ValueError(f"{what} must be within 0..1, got {value}")


@dataclass
class BudgetLedger:
    """What has been spent: inputs seen, inputs that thought, thought tokens generated."""

    items_seen: int = 0
    items_thought: int = 0
    thought_tokens: int = 0

    @property
    def think_ratio(self) -> float:
        return self.items_thought / self.items_seen if self.items_seen else 0.0


@dataclass
class ReasoningBudget:
    """How much an index (or a role of it) may think, and what it has spent so far."""

    mode: BudgetMode = "adaptive"
    threshold: float = 0.5
    max_think_ratio: float | None = None
    max_thought_tokens: int = 128
    token_budget: int | None = None
    ledger: BudgetLedger = field(default_factory=BudgetLedger)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"budget mode must be one of {MODES}, got {self.mode!r}")
        check_threshold(self.threshold)
        if self.max_think_ratio is not None and not 0.0 <= self.max_think_ratio <= 1.0:
            raise ValueError(f"max_think_ratio must be within 0..1, got {self.max_think_ratio}")
        if self.max_thought_tokens < 1:
            raise ValueError(f"max_thought_tokens must be >= 1, got {self.max_thought_tokens}")
        if self.token_budget is not None and self.token_budget < 0:
            raise ValueError(f"token_budget must be >= 0, got {self.token_budget}")
        if isinstance(self.ledger, dict):
            self.ledger = BudgetLedger(**self.ledger)

    # -- selection ----------------------------------------------------------------------
    def select(self, gate_scores: Sequence[float]) -> list[int]:
        """Pick which positions of a batch think, and count the batch as seen in the ledger.

        Call ``record`` afterwards with the tokens actually spent. Returns sorted positions.
        """
        self.ledger.items_seen += len(gate_scores)
        return self.select_counted(gate_scores)

    def select_counted(self, gate_scores: Sequence[float]) -> list[int]:
        """Pick which positions think among items the ledger already counts as seen (the items
        of an index embedded without thinking, awaiting the global selection): the same
        candidates and caps as ``select``, with nothing added to ``items_seen``."""
        n = len(gate_scores)
        seen_after = self.ledger.items_seen
        if self.mode == "never" or n == 0:
            return []
        if self.mode == "always":
            candidates = list(range(n))
        else:
            candidates = [i for i in range(n) if gate_scores[i] >= self.threshold]
            candidates.sort(key=lambda i: (-gate_scores[i], i))
        chosen: list[int] = []
        for i in candidates:
            thought_after = self.ledger.items_thought + len(chosen) + 1
            if self.max_think_ratio is not None and thought_after > self.max_think_ratio * seen_after + 1e-9:
                break
            if self.token_budget is not None:
                reserved = (len(chosen) + 1) * self.max_thought_tokens
                if self.ledger.thought_tokens + reserved > self.token_budget:
                    break
            chosen.append(i)
        return sorted(chosen)

    def record(self, thought_token_counts: Sequence[int]) -> None:
        """Add the thoughts produced for the inputs ``select`` picked."""
        self.ledger.items_thought += len(thought_token_counts)
        self.ledger.thought_tokens += int(sum(thought_token_counts))

    @property
    def tokens_remaining(self) -> int | None:
        return None if self.token_budget is None else self.token_budget - self.ledger.thought_tokens

    def describe(self) -> str:
        """One line for people: what was spent, then what is allowed."""
        ledger = self.ledger
        spent = f"thought {ledger.items_thought}/{ledger.items_seen} items ({ledger.think_ratio:.0%}), "
        spent += f"{ledger.thought_tokens} thought tokens"
        allowed = [self.mode]
        if self.mode == "adaptive":
            allowed.append(f"gate threshold {self.threshold:.2f}")
        if self.max_think_ratio is not None:
            allowed.append(f"think ratio <= {self.max_think_ratio:.2f}")
        allowed.append(f"<= {self.max_thought_tokens} tokens per thought")
        if self.token_budget is None:
            allowed.append("no token budget")
        else:
            allowed.append(f"token budget {self.token_budget} ({self.tokens_remaining} left)")
        return f"{spent}; allowed: {', '.join(allowed)}"

    # -- calibration ----------------------------------------------------------------------
    def calibrated(self, gate_scores: Sequence[float], target_ratio: float) -> ReasoningBudget:
        """A copy in adaptive mode whose threshold yields ``target_ratio`` on these scores."""
        data = self.to_dict()
        data.update(mode="adaptive", threshold=calibrate(gate_scores, target_ratio))
        return ReasoningBudget.from_dict(data)

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ReasoningBudget:
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReasoningBudget:
        return cls.from_dict(json.loads(text))


def calibrate(gate_scores: Sequence[float], target_ratio: float) -> float:
    """The threshold at which the fraction of ``gate_scores`` >= threshold is the largest
    achievable value not above ``target_ratio`` (ties cannot be split).

    A ratio of 0 returns a threshold just above the highest score (nobody thinks).
    """
    if not 0.0 <= target_ratio <= 1.0:
        raise ValueError(f"target_ratio must be within 0..1, got {target_ratio}")
    scores = sorted((float(s) for s in gate_scores), reverse=True)
    if not scores:
        raise ValueError("calibrate needs at least one gate score")
    allowed = math.floor(target_ratio * len(scores) + 1e-9)
    if allowed >= len(scores):
        return scores[-1]
    # Thinking set = scores >= threshold; the threshold sits just above the first excluded score.
    excluded = scores[allowed]
    return math.nextafter(excluded, math.inf)
