"""The JIRA sync: a full sync per project, then incremental ones (DESIGN.md, "Syncs JIRA").

A project's scope is `project = "KEY"`, narrowed by JIRA_JQL when that is set. The first run
(or one a day, or after JIRA_JQL changed) is full: every issue, then the mirrored issues Jira
did not return are checked by id and those really gone are deleted. Later runs ask only for
`updated >= <watermark epoch ms> - lookback`: epoch milliseconds, never a zone-less JQL date,
which Jira reads in the account's timezone at minute precision. The lookback is the overlap
(a minute) or the last run's length if longer, so a change made while a run was paging is seen
by the next one; the boundary set of (issue id, updated) already stored inside that window is
skipped, so the overlap stores nothing twice. Pages are ordered by key, which an update does
not move, so offset paging cannot skip an issue that changes mid-run. After the incremental
search, one count compares Jira with the mirror; a difference (a deletion, say) triggers an
id sweep that repairs it. Jira answers 400 to an `id in (...)` that names a deleted issue, so
those lookups ask Server not to validate the query, and on Cloud (which always validates)
confirm each candidate by its GET first (404: gone). An issue that cannot be read is skipped
and logged, never the end of the run.

Every run is a row in sync_status; progress goes out as `sync_progress`, the end as
`sync_complete` or `sync_error`, changed tickets as `tickets_updated` (a page) or
`ticket_updated` (one, from a webhook). A run that cannot start (the project list fails, or a
project's start) is a failed row too. A lease per project keeps two syncs of it apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.clock import Clock
from bot.events.bus import EventBus
from bot.jira.client import JiraBadRequest, JiraClient, JiraNotFound, SearchPage
from bot.jira.issues import (
    SYNC_FIELDS,
    changelog_is_truncated,
    ticket_from_issue,
    updated_ms_of,
)
from storage import jira_sync, tickets
from storage.database import Database
from storage.tickets import TicketRecord
from storage.timestamps import from_text

log = logging.getLogger(__name__)

PAGE_SIZE = 100
OVERLAP_MS = 60_000
FULL_SYNC_EVERY = timedelta(hours=24)
LEASE_TTL_S = 300.0
VERIFY_CHUNK = 100
# The sync_status row of a run that failed before it could start, and its stream's project.
ALL_PROJECTS = "*"

ProgressCallback = Callable[[int, int | None], None]

_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
_ORDER_BY = re.compile(r"\border\s+by\b.*$", re.IGNORECASE | re.DOTALL)
_PROJECT_CLAUSE = re.compile(
    r"^\s*project\s*(?:=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?|in\s*\(([^)]*)\))\s*(?:$|\band\b)",
    re.IGNORECASE,
)


class SyncAlreadyRunning(Exception):
    """Another sync of this project holds its lease."""

    def __init__(self, project: str, holder: str | None) -> None:
        super().__init__(f"a sync of {project} is already running")
        self.project = project
        self.holder = holder


def stream_of(project: str) -> str:
    """The bus stream of a project's sync and ticket events (`jira:*`: the project list)."""
    return f"jira:{project}"


def is_project_key(text: str) -> bool:
    """Whether `text` (upper-cased) can be a Jira project key."""
    return _PROJECT_KEY.match(text.upper()) is not None


def projects_named_in(jql: str | None) -> list[str] | None:
    """The project keys a JQL filter starts with (`project = X` / `project in (X, Y)`), if so."""
    if not jql:
        return None
    match = _PROJECT_CLAUSE.match(_ORDER_BY.sub("", jql))
    if match is None:
        return None
    if match.group(1):
        return [match.group(1).upper()]
    keys = [part.strip().strip("\"'").upper() for part in match.group(2).split(",")]
    return [key for key in keys if key] or None


@dataclass(frozen=True, slots=True)
class SyncResult:
    run_id: int
    project: str
    kind: str
    seen: int
    created: int
    updated: int
    deleted: int
    requests: int
    duration_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "project": self.project,
            "kind": self.kind,
            "seen": self.seen,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class _Tally:
    seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    max_updated_ms: int | None = None
    seen_ids: set[str] = field(default_factory=set)


@dataclass
class SyncJob:
    """A started sync: its lease is held and its sync_status row exists; `run()` does it."""

    sync: JiraSync
    project: str
    kind: str
    trigger: str
    run_id: int
    jql: str
    cursor: jira_sync.SyncCursor | None
    on_progress: ProgressCallback | None = None
    started: bool = False

    async def run(self) -> SyncResult:
        self.started = True
        return await self.sync._run(self)

    async def abandon(self, reason: str) -> None:
        """Give up a job that will never run: its row fails, its lease and slot are freed."""
        if not self.started:
            self.started = True
            await self.sync._abandon(self, reason)


class JiraSync:
    def __init__(
        self,
        *,
        db: Database,
        bus: EventBus,
        clock: Clock,
        client: JiraClient,
        jql_filter: str | None = None,
        page_size: int = PAGE_SIZE,
        overlap_ms: int = OVERLAP_MS,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.client = client
        self.jql_filter = _ORDER_BY.sub("", jql_filter).strip() if jql_filter else None
        self.page_size = page_size
        self.overlap_ms = overlap_ms
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: set[str] = set()  # the lease is per process; this is per instance

    # -- scope -----------------------------------------------------------------------------

    def scope_jql(self, project: str) -> str:
        base = f'project = "{project}"'
        return f"{base} AND ({self.jql_filter})" if self.jql_filter else base

    async def projects(self) -> list[str]:
        """The projects the scheduled sync covers: named in JIRA_JQL, or all visible ones."""
        named = projects_named_in(self.jql_filter)
        if named is not None:
            return named
        return await self.client.project_keys()

    # -- runs ------------------------------------------------------------------------------

    async def begin(
        self,
        project: str,
        *,
        trigger: str,
        full: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> SyncJob:
        """Take the project's lease and record the run; raises SyncAlreadyRunning."""
        project = project.upper()
        if not is_project_key(project):
            raise ValueError(f"not a Jira project key: {project!r}")
        if project in self._running:
            raise SyncAlreadyRunning(project, self.holder)
        self._running.add(project)  # before any await: two callers here cannot both pass
        try:
            now = self.clock.now()
            acquired = await jira_sync.acquire_lease(
                self.db, project, holder=self.holder, now=now, ttl_s=LEASE_TTL_S
            )
            if not acquired:
                holder = await jira_sync.lease_holder(self.db, project, now=now)
                raise SyncAlreadyRunning(project, holder)
            try:
                jql = self.scope_jql(project)
                cursor = await jira_sync.get_cursor(self.db, project)
                stale = (
                    cursor is not None and now - from_text(cursor.full_synced_at) > FULL_SYNC_EVERY
                )
                full = full or cursor is None or cursor.jql != jql or stale
                kind = "full" if full else "incremental"
                run_id = await jira_sync.start_run(
                    self.db, project=project, kind=kind, trigger=trigger, now=now
                )
            except BaseException:
                await jira_sync.release_lease(self.db, project, holder=self.holder)
                raise
        except BaseException:
            self._running.discard(project)
            raise
        return SyncJob(self, project, kind, trigger, run_id, jql, cursor, on_progress)

    async def sync_project(
        self,
        project: str,
        *,
        trigger: str,
        full: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        job = await self.begin(project, trigger=trigger, full=full, on_progress=on_progress)
        return await job.run()

    async def sync_all(self, *, trigger: str) -> list[SyncResult]:
        """Every project in scope, one after the other; a busy or failing one is skipped.

        Whatever fails (Jira, the database, a bug) fails that project alone, recorded in
        sync_status and published as `sync_error`; the others still run.
        """
        results = []
        try:
            projects = await self.projects()
        except Exception as error:
            await self.record_failure(
                ALL_PROJECTS,
                kind="projects",
                trigger=trigger,
                error=f"cannot list projects: {error}",
            )
            return []
        for project in projects:
            try:
                job = await self.begin(project, trigger=trigger)
            except SyncAlreadyRunning:
                log.info("JIRA sync of %s skipped: one is already running", project)
                continue
            except Exception as error:
                await self.record_failure(
                    project, kind="start", trigger=trigger, error=f"cannot start: {error}"
                )
                continue
            try:
                results.append(await job.run())
            except Exception as error:  # already recorded and published by the run
                log.debug("JIRA sync of %s failed: %s", project, error)
        return results

    async def record_failure(self, project: str, *, kind: str, trigger: str, error: str) -> None:
        """A run that failed before it could start: a failed sync_status row and `sync_error`."""
        log.error("JIRA sync of %s (%s) failed: %s", project, trigger, error)
        try:
            run_id = await jira_sync.start_run(
                self.db, project=project, kind=kind, trigger=trigger, now=self.clock.now()
            )
            await self._fail_run(project, run_id, kind, error)
        except Exception:
            log.exception("JIRA sync of %s: cannot record the failure", project)

    async def _fail_run(self, project: str, run_id: int, kind: str, error: str) -> None:
        """A run that did nothing: its sync_status row failed with `error`, and `sync_error`."""
        await jira_sync.finish_run(
            self.db,
            run_id,
            status="failed",
            seen=0,
            created=0,
            updated=0,
            deleted=0,
            requests=0,
            error=error,
            now=self.clock.now(),
        )
        await self.bus.publish(
            stream_of(project),
            "sync_error",
            {"project": project, "error": error, "run_id": run_id, "kind": kind},
        )

    async def _abandon(self, job: SyncJob, reason: str) -> None:
        try:
            await self._fail_run(job.project, job.run_id, job.kind, reason)
        finally:
            self._running.discard(job.project)
            await jira_sync.release_lease(self.db, job.project, holder=self.holder)

    async def _run(self, job: SyncJob) -> SyncResult:
        started = self.clock.monotonic()
        requests_before = self.client.requests_made
        tally = _Tally()
        log.info("JIRA sync of %s (%s, run %d) started", job.project, job.kind, job.run_id)
        try:
            if job.kind == "full":
                await self._full(job, tally)
            else:
                await self._incremental(job, tally)
            duration_ms = int((self.clock.monotonic() - started) * 1000)
            previous = job.cursor.high_water_ms if job.cursor and job.kind != "full" else 0
            high_water = max(previous, tally.max_updated_ms or 0)
            await jira_sync.save_cursor(
                self.db,
                project=job.project,
                jql=job.jql,
                high_water_ms=high_water,
                lookback_ms=max(self.overlap_ms, duration_ms + 1000),
                full=job.kind == "full",
                now=self.clock.now(),
            )
        except BaseException as error:
            message = str(error) or type(error).__name__
            if isinstance(error, asyncio.CancelledError):
                message = "cancelled"
            await self._finish(job, tally, requests_before, status="failed", error=message)
            await self.bus.publish(
                stream_of(job.project),
                "sync_error",
                {"project": job.project, "error": message, "run_id": job.run_id, "kind": job.kind},
            )
            log.error("JIRA sync of %s (run %d) failed: %s", job.project, job.run_id, message)
            raise
        finally:
            self._running.discard(job.project)
            await jira_sync.release_lease(self.db, job.project, holder=self.holder)
        duration_s = self.clock.monotonic() - started
        requests = await self._finish(job, tally, requests_before, status="complete", error=None)
        result = SyncResult(
            job.run_id,
            job.project,
            job.kind,
            tally.seen,
            tally.created,
            tally.updated,
            tally.deleted,
            requests,
            duration_s,
        )
        await self.bus.publish(
            stream_of(job.project),
            "sync_complete",
            {
                "project": job.project,
                "created": tally.created,
                "updated": tally.updated,
                "deleted": tally.deleted,
                "duration_s": round(duration_s, 3),
                "run_id": job.run_id,
                "kind": job.kind,
                "seen": tally.seen,
                "requests": requests,
            },
        )
        log.info(
            "JIRA sync of %s (run %d) complete: %d seen, %d created, %d updated, %d deleted,"
            " %d requests, %.2fs",
            job.project,
            job.run_id,
            tally.seen,
            tally.created,
            tally.updated,
            tally.deleted,
            requests,
            duration_s,
        )
        return result

    async def _finish(
        self, job: SyncJob, tally: _Tally, requests_before: int, *, status: str, error: str | None
    ) -> int:
        requests = self.client.requests_made - requests_before
        await jira_sync.finish_run(
            self.db,
            job.run_id,
            status=status,
            seen=tally.seen,
            created=tally.created,
            updated=tally.updated,
            deleted=tally.deleted,
            requests=requests,
            error=error,
            now=self.clock.now(),
        )
        return requests

    # -- the two kinds ---------------------------------------------------------------------

    async def _full(self, job: SyncJob, tally: _Tally) -> None:
        # Only for the progress total (Server's pages carry it): None when Cloud cannot count.
        total = await self.client.count(job.jql) if self.client.is_cloud else None
        await self._page_through(job, f"{job.jql} ORDER BY key ASC", tally, set(), total)
        mirrored = await tickets.ids_of_project(self.db, job.project)
        missing = [issue_id for issue_id in mirrored if issue_id not in tally.seen_ids]
        await self._verify_missing(job, missing, tally)

    async def _incremental(self, job: SyncJob, tally: _Tally) -> None:
        assert job.cursor is not None
        since_ms = job.cursor.high_water_ms - job.cursor.lookback_ms
        boundary = await jira_sync.boundary_of(self.db, job.project)
        jql = f"{job.jql} AND updated >= {since_ms} ORDER BY key ASC"
        await self._page_through(job, jql, tally, boundary, None)
        remote = await self.client.count(job.jql)
        remote_ids = None
        if remote is None:
            # No count from Jira (Cloud without approximate-count): the id listing is the count.
            remote_ids = await self.client.issue_ids(f"{job.jql} ORDER BY key ASC")
            remote = len(remote_ids)
        local = await tickets.count_of_project(self.db, job.project)
        if remote != local:
            log.info(
                "JIRA sync of %s: Jira counts %d issues, the mirror %d; sweeping ids",
                job.project,
                remote,
                local,
            )
            await self._sweep_ids(job, tally, remote_ids)

    # -- paging ----------------------------------------------------------------------------

    async def _fetch(self, jql: str, *, start_at: int, token: str | None) -> SearchPage:
        return await self.client.search_page(
            jql,
            fields=SYNC_FIELDS,
            expand="changelog",
            start_at=start_at,
            token=token,
            max_results=self.page_size,
        )

    async def _page_through(
        self,
        job: SyncJob,
        jql: str,
        tally: _Tally,
        boundary: set[tuple[str, int]],
        total: int | None,
    ) -> None:
        """Every page of `jql`, storing each; the next page is fetched while one is stored."""
        start_at = 0
        pending = asyncio.ensure_future(self._fetch(jql, start_at=0, token=None))
        try:
            while True:
                page = await pending
                start_at += len(page.issues)
                more = not page.is_last and bool(page.issues)
                if more:
                    pending = asyncio.ensure_future(
                        self._fetch(jql, start_at=start_at, token=page.next_token)
                    )
                if page.total is not None:
                    total = page.total
                await self._store_page(job, page.issues, tally, boundary)
                await self._progress(job, tally.seen, total)
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    async def _store_page(
        self,
        job: SyncJob,
        issues: list[dict[str, Any]],
        tally: _Tally,
        boundary: set[tuple[str, int]],
    ) -> None:
        records: list[TicketRecord] = []
        for issue in issues:
            issue_id = str(issue.get("id") or "")
            tally.seen += 1
            if issue_id:
                tally.seen_ids.add(issue_id)  # Jira has it: never taken for a deletion
            try:
                updated_ms = updated_ms_of(issue)
            except (KeyError, TypeError, ValueError) as error:
                _log_unreadable(job.project, issue, error)
                continue
            if tally.max_updated_ms is None or updated_ms > tally.max_updated_ms:
                tally.max_updated_ms = updated_ms
            if (issue_id, updated_ms) in boundary:
                continue
            record = await self._record(job.project, issue)
            if record is not None:
                records.append(record)
        await self._store(job.project, records, tally)

    async def _record(self, project: str, issue: dict[str, Any]) -> TicketRecord | None:
        """The issue as a record; None (logged) when it cannot be read."""
        histories = None
        if changelog_is_truncated(issue):
            histories = await self.client.full_changelog(str(issue["id"]))
        try:
            return ticket_from_issue(issue, histories=histories)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            _log_unreadable(project, issue, error)
            return None

    async def _store(self, project: str, records: list[TicketRecord], tally: _Tally) -> None:
        if not records:
            return
        outcome = await tickets.store_tickets(self.db, records, now=self.clock.now())
        tally.created += len(outcome.created)
        tally.updated += len(outcome.updated)
        changed = [*outcome.created, *outcome.updated]
        if changed:
            await self.bus.publish(
                stream_of(project),
                "tickets_updated",
                {"keys": changed, "project": project, "created": list(outcome.created)},
            )

    async def _progress(self, job: SyncJob, done: int, total: int | None) -> None:
        data: dict[str, Any] = {"project": job.project, "done": done, "run_id": job.run_id}
        if total is not None:
            data["total"] = total
        await self.bus.publish(stream_of(job.project), "sync_progress", data)
        await jira_sync.acquire_lease(
            self.db, job.project, holder=self.holder, now=self.clock.now(), ttl_s=LEASE_TTL_S
        )
        if job.on_progress is not None:
            job.on_progress(done, total)

    # -- deletions -------------------------------------------------------------------------

    async def _issues_among(
        self, scope_jql: str, ids: list[str], *, likely_gone: bool
    ) -> list[dict[str, Any]]:
        """The issues among `ids` (at most VERIFY_CHUNK) that Jira has within `scope_jql`.

        Jira answers 400 to an `id in (...)` naming an issue it no longer has ("An issue with
        key 'N' does not exist for field 'id'"). Server is asked not to validate the query, so
        it just leaves those out. Cloud always validates: candidates that are `likely_gone` are
        confirmed by their GET first (404: gone), others only when the search is refused.
        """
        confirmed = False
        if self.client.is_cloud and likely_gone:
            ids, confirmed = await self._still_there(ids), True
        while ids:
            try:
                page = await self.client.search_page(
                    f"{scope_jql} AND id in ({', '.join(ids)})",
                    fields=SYNC_FIELDS,
                    expand="changelog",
                    max_results=len(ids),
                    validate_query=False,
                )
            except JiraBadRequest:
                if not self.client.is_cloud or confirmed:
                    raise
                ids, confirmed = await self._still_there(ids), True
                continue
            return page.issues
        return []

    async def _still_there(self, ids: list[str]) -> list[str]:
        exists = await asyncio.gather(*(self.client.issue_exists(i) for i in ids))
        return [issue_id for issue_id, there in zip(ids, exists, strict=True) if there]

    async def _verify_missing(self, job: SyncJob, missing: list[str], tally: _Tally) -> None:
        """Mirrored issues a listing did not return: store those Jira still has, drop the rest."""
        gone: list[str] = []
        for start in range(0, len(missing), VERIFY_CHUNK):
            chunk = missing[start : start + VERIFY_CHUNK]
            issues = await self._issues_among(job.jql, chunk, likely_gone=True)
            found = {str(issue.get("id")) for issue in issues}
            await self._store_page(job, issues, tally, set())
            gone.extend(issue_id for issue_id in chunk if issue_id not in found)
        if gone:
            keys = await tickets.delete_tickets(self.db, gone)
            tally.deleted += len(keys)
            await self.bus.publish(
                stream_of(job.project),
                "tickets_updated",
                {"keys": keys, "project": job.project, "deleted": keys},
            )

    async def _sweep_ids(
        self, job: SyncJob, tally: _Tally, remote_ids: list[str] | None = None
    ) -> None:
        """List every id in scope; fetch the ones the mirror lacks, verify the ones Jira lacks."""
        if remote_ids is None:
            remote_ids = await self.client.issue_ids(f"{job.jql} ORDER BY key ASC")
        remote = set(remote_ids)
        mirrored = await tickets.ids_of_project(self.db, job.project)
        absent = [issue_id for issue_id in remote_ids if issue_id not in mirrored]
        for start in range(0, len(absent), VERIFY_CHUNK):
            chunk = absent[start : start + VERIFY_CHUNK]
            issues = await self._issues_among(job.jql, chunk, likely_gone=False)
            await self._store_page(job, issues, tally, set())
        await self._verify_missing(job, [i for i in mirrored if i not in remote], tally)

    # -- one issue (webhooks) --------------------------------------------------------------

    async def refresh_issue(self, issue_id: str) -> str | None:
        """Bring one issue up to date now (a webhook said it changed); returns its key.

        Fetched by a search within the sync scope, so an issue outside it is not mirrored
        (and is forgotten if it moved out); an issue Jira no longer has is deleted. Cloud
        answers 400 to `id = N` for a deleted N, but a 400 is no proof: the issue's GET must
        answer 404 before the ticket is deleted.
        """
        if not issue_id.isdigit():
            raise ValueError(f"not a Jira issue id: {issue_id!r}")
        jql = f"id = {issue_id}" + (f" AND ({self.jql_filter})" if self.jql_filter else "")
        try:
            page = await self.client.search_page(
                jql, fields=SYNC_FIELDS, expand="changelog", max_results=1, validate_query=False
            )
        except JiraNotFound:
            page = SearchPage([], 0, None, True)
        except JiraBadRequest:
            if await self.client.issue_exists(issue_id):
                raise
            page = SearchPage([], 0, None, True)
        if not page.issues:
            return await self.forget_issue(issue_id)
        issue = page.issues[0]
        project = str(issue.get("key", "")).rsplit("-", 1)[0]
        record = await self._record(project, issue)
        if record is None:
            return None
        outcome = await tickets.store_tickets(self.db, [record], now=self.clock.now())
        if outcome.created or outcome.updated:
            await self.bus.publish(
                stream_of(record.project),
                "ticket_updated",
                {
                    "key": record.key,
                    "project": record.project,
                    "fields": {"status": record.status, "summary": record.summary},
                    "created": bool(outcome.created),
                },
            )
        return record.key

    async def forget_issue(self, issue_id: str) -> str | None:
        """Delete one issue from the mirror (a webhook said it was deleted)."""
        existing = await tickets.get_ticket_by_id(self.db, issue_id)
        if existing is None:
            return None
        await tickets.delete_tickets(self.db, [issue_id])
        await self.bus.publish(
            stream_of(existing.project),
            "ticket_updated",
            {"key": existing.key, "project": existing.project, "deleted": True},
        )
        return existing.key


def _log_unreadable(project: str, issue: dict[str, Any], error: Exception) -> None:
    log.warning(
        "JIRA sync of %s: skipping issue %s (id %s), it cannot be read: %s: %s",
        project,
        issue.get("key"),
        issue.get("id"),
        type(error).__name__,
        error,
    )
