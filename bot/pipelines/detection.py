"""Which cycle type a ticket is: the rules kept in the database decide first.

A rule matches when every condition it sets holds (issue type and label and component compare
case-insensitively; a summary word matches a whole word of the summary). The first matching
rule, in position order, wins, and its reason is recorded on the pipeline. No match: the
triage agent decides (bot/pipelines/engine.py), and a person can override either before start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from storage.cycle_types import CycleRule


@dataclass(frozen=True, slots=True)
class TicketTraits:
    """What the rules look at in a ticket."""

    issue_type: str | None
    labels: tuple[str, ...]
    components: tuple[str, ...]
    summary: str


@dataclass(frozen=True, slots=True)
class Detection:
    cycle_type: str
    reason: str


def _folded(values: Sequence[str]) -> set[str]:
    return {value.casefold() for value in values}


def rule_matches(rule: CycleRule, ticket: TicketTraits) -> bool:
    conditions = (rule.issue_type, rule.label, rule.component, rule.summary_word)
    if all(condition is None for condition in conditions):
        return False  # a rule with no condition would take every ticket
    if rule.issue_type is not None and (
        ticket.issue_type is None or ticket.issue_type.casefold() != rule.issue_type.casefold()
    ):
        return False
    if rule.label is not None and rule.label.casefold() not in _folded(ticket.labels):
        return False
    if rule.component is not None and rule.component.casefold() not in _folded(ticket.components):
        return False
    if rule.summary_word is not None:
        words = _folded(re.findall(r"\w+", ticket.summary))
        if rule.summary_word.casefold() not in words:
            return False
    return True


def describe(rule: CycleRule) -> str:
    parts = [
        f"{name} {value!r}"
        for name, value in (
            ("issue type", rule.issue_type),
            ("label", rule.label),
            ("component", rule.component),
            ("summary word", rule.summary_word),
        )
        if value is not None
    ]
    return f"rule {rule.position}: " + " and ".join(parts)


def detect_by_rules(rules: Sequence[CycleRule], ticket: TicketTraits) -> Detection | None:
    """The first rule that matches, with a reason a person can read; None when none does."""
    for rule in sorted(rules, key=lambda rule: (rule.position, rule.id)):
        if rule_matches(rule, ticket):
            return Detection(rule.cycle_type, describe(rule))
    return None
