"""A ticket's relatives in the mirror: its links (both directions), parent and sub-tasks.

Read by `GET /api/tickets/{key}/related` and the ticket page. A relative the mirror does not hold
(another project, not synced yet) is still listed, by key, with `summary` None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage import tickets
from storage.database import Database
from storage.tickets import Ticket, TicketLink, TicketSummary


@dataclass(frozen=True, slots=True)
class Relative:
    key: str
    summary: TicketSummary | None  # None: not in the mirror

    def as_json(self) -> dict[str, Any]:
        return self.summary.as_json() if self.summary else {"key": self.key, "mirrored": False}


@dataclass(frozen=True, slots=True)
class Related:
    links: list[tuple[TicketLink, bool]]  # each link, and whether its other end is mirrored
    parent: Relative | None
    subtasks: list[Relative]

    def as_json(self, key: str) -> dict[str, Any]:
        return {
            "key": key,
            "links": [{**link.as_json(), "mirrored": mirrored} for link, mirrored in self.links],
            "parent": self.parent.as_json() if self.parent else None,
            "subtasks": [relative.as_json() for relative in self.subtasks],
        }


async def related_of(db: Database, ticket: Ticket) -> Related:
    links = await tickets.links_of(db, ticket.id)
    parent_keys = [ticket.parent_key] if ticket.parent_key else []
    known = await tickets.summaries_by_key(db, [link.other_key for link in links] + parent_keys)
    children = await tickets.children_of(db, ticket.key)
    subtask_keys = sorted(set(ticket.subtask_keys) | {child.key for child in children})
    known.update(await tickets.summaries_by_key(db, subtask_keys))
    return Related(
        links=[(link, link.other_key in known) for link in links],
        parent=Relative(ticket.parent_key, known.get(ticket.parent_key))
        if ticket.parent_key
        else None,
        subtasks=[Relative(key, known.get(key)) for key in subtask_keys],
    )
