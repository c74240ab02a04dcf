"""A protocol fake of the Jira REST API (v2 and v3) on loopback, for the real `jira` library.

It speaks what biagent uses: serverInfo (deploymentType Server or Cloud), myself, project,
field, JQL search (Server: `GET /search` with startAt/maxResults/total; Cloud: `GET|POST
/search/jql` with nextPageToken/isLast, `POST /search/approximate-count`, and the old `/search`
answered 410 Gone as Cloud does since 2025), an issue with fields, changelog, issuelinks (both
ways, from one link table), attachments and comments, Cloud's changelog paging, transitions,
comments, field updates, attachment metadata and content (streamed, any size, never built in
memory), and 429 with Retry-After on demand. Credentials are checked (Basic email:token, or a
Bearer token), every request is recorded. JQL is a small real parser: AND/OR, parentheses,
= != > >= < <= ~ IN, NOT IN, ORDER BY; an unknown field or a syntax error is a 400 with Jira's
error shape, and so is an `id` naming an issue that does not exist (always on Cloud; on Server
unless validateQuery=false, which makes it a warning). Attachment content is gzipped when the
client accepts it, as behind a compressing proxy. Issues are built in the shapes of the recorded
payloads in tests/fixtures/jira.

Its parts, one module each: model.py (the records, statuses, times, ADF), jql.py (the query
parser), fake.py (`FakeJira`: the state and the test controls), render.py (the JSON shapes),
server.py (the app and the gate every request meets), site.py, search.py and issues.py (the
routes). Tests import what they need from here.
"""

from tests.fakes.jira.fake import FakeJira, IssueRelations
from tests.fakes.jira.jql import KNOWN_FIELDS, JqlError
from tests.fakes.jira.model import (
    ACCOUNT_TZ,
    BASE_MS,
    LINK_TYPES,
    STATUSES,
    TRANSITIONS,
    FakeAttachment,
    FakeIssue,
    FakeLink,
    Recorded,
    jira_time,
    to_adf,
)

__all__ = [
    "ACCOUNT_TZ",
    "BASE_MS",
    "KNOWN_FIELDS",
    "LINK_TYPES",
    "STATUSES",
    "TRANSITIONS",
    "FakeAttachment",
    "FakeIssue",
    "FakeJira",
    "FakeLink",
    "IssueRelations",
    "JqlError",
    "Recorded",
    "jira_time",
    "to_adf",
]
