"""Token use and cost, per turn and per run.

Prices are US dollars per million tokens from Anthropic's published price list; a model
missing from the table is priced as the default model and the run says so, rather than
showing a cost of zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

DEFAULT_MODEL = "claude-sonnet-5-5"


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read: float
    cache_write: float  # 5-minute cache writes, the kind `ephemeral` breakpoints make


PRICES: dict[str, Price] = {
    "claude-sonnet-5-5": Price(2.0, 10.0, 0.20, 2.50),
    "claude-sonnet-5": Price(2.0, 10.0, 0.20, 2.50),
    "claude-opus-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-8": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-7": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-6": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-sonnet-4-6": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10, 1.25),
}


def price_for(model: str) -> tuple[Price, bool]:
    """The price of `model` and whether it was known (dated ids map to their family)."""
    for name in sorted(PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            return PRICES[name], True
    return PRICES[DEFAULT_MODEL], False


@dataclass
class TurnUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_api(cls, usage: object) -> TurnUsage:
        def get(name: str) -> int:
            value = getattr(usage, name, None)
            return int(value or 0)

        return cls(
            input_tokens=get("input_tokens"),
            output_tokens=get("output_tokens"),
            cache_read_tokens=get("cache_read_input_tokens"),
            cache_write_tokens=get("cache_creation_input_tokens"),
        )

    def cost(self, model: str) -> float:
        price, _ = price_for(model)
        return (
            self.input_tokens * price.input
            + self.output_tokens * price.output
            + self.cache_read_tokens * price.cache_read
            + self.cache_write_tokens * price.cache_write
        ) / 1_000_000


TOKEN_FIELDS = tuple(f.name for f in fields(TurnUsage))


@dataclass
class RunUsage:
    """What a run (or a whole session) has used so far.

    The totals are kept as turns are added, not summed again: a surface shows the cost after
    every turn, and a 200-turn session would otherwise add up all its turns on each one."""

    model: str
    turns: list[TurnUsage] = field(default_factory=list)
    _sum: TurnUsage = field(default_factory=TurnUsage, init=False, repr=False, compare=False)
    _counted: int = field(default=0, init=False, repr=False, compare=False)

    def add(self, turn: TurnUsage) -> None:
        self.turns.append(turn)

    def _totals(self) -> TurnUsage:
        # `turns` is a plain list a caller may append to directly: count what is new, and
        # start again if it was replaced by a shorter one.
        if self._counted > len(self.turns):
            self._sum, self._counted = TurnUsage(), 0
        for turn in self.turns[self._counted :]:
            for name in TOKEN_FIELDS:
                setattr(self._sum, name, getattr(self._sum, name) + getattr(turn, name))
        self._counted = len(self.turns)
        return self._sum

    @property
    def cost(self) -> float:
        # Cost is linear in each kind of token, so the totals' cost is the sum of the turns'.
        return self._totals().cost(self.model)

    def total(self, name: str) -> int:
        return int(getattr(self._totals(), name))

    @property
    def cache_hit_rate(self) -> float:
        """Share of prompt tokens served from the cache."""
        read = self.total("cache_read_tokens")
        prompt = read + self.total("input_tokens") + self.total("cache_write_tokens")
        return read / prompt if prompt else 0.0

    def summary(self) -> str:
        _, known = price_for(self.model)
        note = "" if known else f" (priced as {DEFAULT_MODEL}: no price on file for {self.model})"
        return (
            f"{len(self.turns)} model turns · "
            f"{self.total('input_tokens'):,} in, {self.total('output_tokens'):,} out, "
            f"{self.total('cache_read_tokens'):,} cache read, "
            f"{self.total('cache_write_tokens'):,} cache write "
            f"({self.cache_hit_rate:.0%} cached) · ${self.cost:.4f}{note}"
        )
