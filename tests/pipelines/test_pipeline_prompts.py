"""A step's task text: the template filled from the ticket, earlier outputs and feedback."""

from __future__ import annotations

from bot.pipelines.prompts import (
    REVISION_NOTE,
    EarlierOutput,
    TicketFacts,
    task_text,
    with_revision_note,
)

TICKET = TicketFacts("ACME-12", "Add refunds", "Customers want refunds.")


def test_the_template_gets_the_ticket_and_the_earlier_outputs() -> None:
    earlier = [EarlierOutput("plan", "Add a refunds table.", {"steps": ["migrate"]})]
    text = task_text(
        "Do {ticket_key}: {summary}\n{description}\n{earlier_outputs}", TICKET, earlier
    )
    assert text.startswith("Do ACME-12: Add refunds\nCustomers want refunds.")
    assert "## plan\nAdd a refunds table." in text
    assert 'Reported: {"steps": ["migrate"]}' in text


def test_feedback_is_added_even_when_the_template_does_not_name_it() -> None:
    text = task_text("Plan {ticket_key}", TICKET, [], feedback=["use the queue"])
    assert "- use the queue" in text
    assert REVISION_NOTE in text


def test_a_template_with_an_unknown_field_still_gives_a_task() -> None:
    text = task_text("Plan {ticket} {oops", TICKET, [])
    assert text.startswith("Plan {ticket} {oops")
    assert "ACME-12" in text


def test_a_revised_output_starts_with_the_note_once() -> None:
    assert with_revision_note("New plan", 1) == "New plan"
    revised = with_revision_note("New plan", 2)
    assert revised.startswith(f"{REVISION_NOTE}.")
    assert with_revision_note(revised, 3) == revised
