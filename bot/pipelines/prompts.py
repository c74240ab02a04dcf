"""The task text of a pipeline step: its phase's template filled from the ticket and the outputs
of the steps before it, plus a person's feedback when the step is a revision.

Pure. A template is a `str.format` text (docs/pipelines.md lists the fields); a template that
names an unknown field or is malformed gets the fields appended instead of failing the step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REVISION_NOTE = "Revised based on your feedback"
OUTPUT_TEXT_CAP = 6000


@dataclass(frozen=True, slots=True)
class TicketFacts:
    key: str
    summary: str
    description: str


@dataclass(frozen=True, slots=True)
class EarlierOutput:
    phase: str
    text: str
    output: dict[str, Any] | None


def earlier_outputs_text(earlier: Sequence[EarlierOutput]) -> str:
    if not earlier:
        return "(no earlier steps)"
    parts = []
    for step in earlier:
        text = step.text.strip()
        if len(text) > OUTPUT_TEXT_CAP:
            text = text[:OUTPUT_TEXT_CAP] + " [...]"
        part = f"## {step.phase}\n{text}"
        if step.output is not None:
            part += "\nReported: " + json.dumps(step.output, sort_keys=True)
        parts.append(part)
    return "Earlier steps:\n\n" + "\n\n".join(parts)


def feedback_text(feedback: Sequence[str]) -> str:
    if not feedback:
        return ""
    lines = "\n".join(f"- {text.strip()}" for text in feedback)
    return (
        "A person reviewed your earlier output of this step and asked for changes:\n"
        f"{lines}\n"
        f'Start your final answer with the line "{REVISION_NOTE}:" and say what you changed.'
    )


def task_text(
    template: str,
    ticket: TicketFacts,
    earlier: Sequence[EarlierOutput],
    feedback: Sequence[str] = (),
) -> str:
    fields = {
        "ticket_key": ticket.key,
        "summary": ticket.summary,
        "description": ticket.description.strip() or "(no description)",
        "earlier_outputs": earlier_outputs_text(earlier),
        "feedback": feedback_text(feedback),
    }
    try:
        text = template.format(**fields)
    except (KeyError, IndexError, ValueError):
        text = "\n\n".join([template, *(value for value in fields.values() if value)])
    if feedback and "{feedback}" not in template:
        text = f"{text}\n\n{fields['feedback']}"
    return text.strip()


def with_revision_note(final_text: str, attempt: int) -> str:
    """A revised step's output starts with the visible note, whether or not the agent wrote it."""
    if attempt <= 1 or final_text.lstrip().startswith(REVISION_NOTE):
        return final_text
    return f"{REVISION_NOTE}.\n\n{final_text}"
