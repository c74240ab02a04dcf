"""The review concern's webhook router: one module per event, merged here for bot/routers.py.

- on_pull_request.py: `pull_request` (which pull requests are watched, their head, closing);
- on_comment.py: `pull_request_review_comment` and `issue_comment` (commands, mentions, the
  comments that feed a batch);
- on_review.py: `pull_request_review` by action (submitted, edited, dismissed) and
  `pull_request_review_thread` (resolved threads);
- on_check_run.py: `check_run` Re-run of a `biagent/review` check.

What they share (the prelude, the circuit breakers, the gather) is intake.py. Circuit breakers:
biagent's own comments (its bot login, its app id, or the hidden marker) and other bots (unless
`.github/biagent.yml` allows them) never feed a batch.
"""

from __future__ import annotations

from gidgethub import routing

from bot.reviews import on_check_run, on_comment, on_pull_request, on_review

router = routing.Router(
    on_pull_request.router, on_comment.router, on_review.router, on_check_run.router
)
