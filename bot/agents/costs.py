"""CostTracker: tokens and dollars of every Messages API call, summed per step, pipeline and PR.

Prices come from the `prices` table of the agents file (dollars per million tokens: input,
output, cache write, cache read). Each call is one agent_costs row; the loop asks the tracker
for the step's total (every run of the step's session, so a resumed step does not get a fresh
budget) and the pipeline's, and stops the step cleanly when a budget is reached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from storage import agent_runs
from storage.agent_runs import CostTotals
from storage.database import Database

log = logging.getLogger(__name__)

PER_TOKEN = 1 / 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        """From the SDK's Usage object (or its dict form); absent cache counts are 0."""

        def read(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            return int(value or 0)

        return cls(
            input_tokens=read("input_tokens"),
            output_tokens=read("output_tokens"),
            cache_write_tokens=read("cache_creation_input_tokens"),
            cache_read_tokens=read("cache_read_input_tokens"),
        )


class PriceTable:
    def __init__(self, entries: dict[str, Price]) -> None:
        self.entries = entries

    def price_for(self, model: str) -> Price:
        """The entry with the longest prefix of `model`, else `default`."""
        matches = [key for key in self.entries if key != "default" and model.startswith(key)]
        if matches:
            return self.entries[max(matches, key=len)]
        return self.entries["default"]

    def cost(self, model: str, usage: Usage) -> float:
        price = self.price_for(model)
        return PER_TOKEN * (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + usage.cache_write_tokens * price.cache_write
            + usage.cache_read_tokens * price.cache_read
        )


@dataclass(frozen=True, slots=True)
class CallCost:
    model: str
    usage: Usage
    cost_usd: float


class CostTracker:
    def __init__(self, db: Database, prices: PriceTable, clock: Clock) -> None:
        self.db = db
        self.prices = prices
        self.clock = clock

    async def record_call(
        self,
        *,
        run_id: int,
        session_id: int,
        pipeline_id: int | None,
        pr: str | None,
        model: str,
        usage: Usage,
    ) -> CallCost:
        cost = self.prices.cost(model, usage)
        await agent_runs.record_cost(
            self.db,
            run_id=run_id,
            session_id=session_id,
            pipeline_id=pipeline_id,
            pr=pr,
            model=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost_usd=cost,
            now=self.clock.now(),
        )
        return CallCost(model, usage, cost)

    async def step_total(self, session_id: int) -> CostTotals:
        return await agent_runs.cost_totals(self.db, session_id=session_id)

    async def pipeline_total(self, pipeline_id: int) -> CostTotals:
        return await agent_runs.cost_totals(self.db, pipeline_id=pipeline_id)

    async def pr_total(self, pr: str) -> CostTotals:
        return await agent_runs.cost_totals(self.db, pr=pr)
