"""The GitHub fake's review response endpoints (issue 5), on the fake's own state (github.py).

Pulls (listed, opened, read: a pull request that follows a local bare repository reads its
head sha there), review comments and replies (a reply must address the thread's root: 422
otherwise, a strictness beyond GitHub), reviews and their comments, issue comments, reactions,
check runs (created, updated, and listed for a commit by `check_name` and `filter`, each with
its `external_id`), collaborator permission and contents. Answers are built from GitHub's own
examples in tests/fixtures/github-api (same keys, our values).
"""

from __future__ import annotations

import base64
import copy
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.github_common import (
    api_error,
    api_example,
    branch_sha,
    github_time,
    paginate,
    paginate_key,
    public,
    repo_of,
)

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub


class ReviewEndpoints:
    """The review response endpoints, reading and writing `github`'s state."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github

    def add_routes(self, routes: web.RouteTableDef) -> None:
        repo = "/repos/{owner}/{repo}"
        routes.get(repo + "/pulls")(self.list_pulls)
        routes.post(repo + "/pulls")(self.create_pull)
        routes.get(repo + "/pulls/{number:\\d+}")(self.get_pull)
        routes.get(repo + "/pulls/{number:\\d+}/comments")(self.list_pull_review_comments)
        routes.post(repo + "/pulls/{number:\\d+}/comments/{comment_id:\\d+}/replies")(
            self.create_reply
        )
        routes.get(repo + "/pulls/comments/{comment_id:\\d+}")(self.get_review_comment)
        routes.post(repo + "/pulls/comments/{comment_id:\\d+}/reactions")(
            self.create_review_comment_reaction
        )
        routes.get(repo + "/pulls/{number:\\d+}/reviews")(self.list_reviews)
        routes.get(repo + "/pulls/{number:\\d+}/reviews/{review_id:\\d+}")(self.get_review)
        routes.get(repo + "/pulls/{number:\\d+}/reviews/{review_id:\\d+}/comments")(
            self.list_review_comments_for_review
        )
        routes.post(repo + "/pulls/{number:\\d+}/reviews")(self.create_review)
        routes.get(repo + "/issues/{number:\\d+}/comments")(self.list_issue_comments)
        routes.post(repo + "/issues/{number:\\d+}/comments")(self.create_issue_comment)
        routes.post(repo + "/issues/comments/{comment_id:\\d+}/reactions")(
            self.create_issue_comment_reaction
        )
        routes.post(repo + "/check-runs")(self.create_check_run)
        routes.patch(repo + "/check-runs/{check_run_id:\\d+}")(self.update_check_run)
        routes.get(repo + "/commits/{ref}/check-runs")(self.list_check_runs_for_ref)
        routes.get(repo + "/collaborators/{user}/permission")(self.get_permission)
        routes.get(repo + "/contents/{path:.+}")(self.get_contents)

    def _pull(self, request: web.Request) -> dict[str, Any]:
        pull = self.github.pulls.get((repo_of(request), int(request.match_info["number"])))
        if pull is None:
            raise api_error(404, "Not Found")
        return pull

    async def list_pulls(self, request: web.Request) -> web.Response:
        """GET /repos/{o}/{r}/pulls: `state` (open, closed, all) and `head` (owner:branch)."""
        self.github.check_token(request)
        repository = repo_of(request)
        state = request.query.get("state", "open")
        head = request.query.get("head")
        found = [
            pull
            for (name, _), pull in sorted(self.github.pulls.items())
            if name == repository
            and (state == "all" or pull.get("state", "open") == state)
            and (head is None or f"{pull['head'].get('label', '')}" == head)
        ]
        return paginate(request, found)

    async def create_pull(self, request: web.Request) -> web.Response:
        """POST /repos/{o}/{r}/pulls, as the installation's bot; 422 for a second open PR of
        the same head, as GitHub answers."""
        self.github.check_token(request)
        repository = repo_of(request)
        body = await request.json()
        owner = repository.split("/", 1)[0]
        label = f"{owner}:{body['head']}"
        for (name, _), pull in self.github.pulls.items():
            same_head = pull["head"].get("label") == label
            if name == repository and same_head and pull["state"] == "open":
                raise api_error(422, f"A pull request already exists for {label}.")
        number = 1 + max((n for (name, n) in self.github.pulls if name == repository), default=0)
        html = f"https://github.com/{repository}/pull/{number}"
        repo = self._repository_json(repository)
        head_sha = base_sha = None
        if repository in self.github.repository_remotes:
            head_sha = await branch_sha(self.github.repository_remotes[repository], body["head"])
            base_sha = await branch_sha(self.github.repository_remotes[repository], body["base"])
            if not head_sha:  # GitHub's answer to a head branch that was never pushed
                raise api_error(422, "Validation Failed: head is invalid")
            self.github.git_remotes[(repository, number)] = self.github.repository_remotes[
                repository
            ]
        pull = {
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "draft": bool(body.get("draft", False)),
            "html_url": html,
            "url": f"{self.github.base_url}/repos/{repository}/pulls/{number}",
            "user": self.github.bot_user(),
            "head": {"ref": body["head"], "label": label, "sha": head_sha, "repo": repo},
            "base": {
                "ref": body["base"],
                "label": f"{owner}:{body['base']}",
                "sha": base_sha,
                "repo": copy.deepcopy(repo),
            },
            "merged": False,
        }
        self.github.pulls[(repository, number)] = pull
        self.github.opened_pulls.append(pull)
        return web.json_response(public(pull), status=201)

    def _repository_json(self, repository: str) -> dict[str, Any] | None:
        """The repository as a pull request names it (GitHub's example, our values), with the
        clone URL of the bare repository serving it; None when none does."""
        bare = self.github.repository_remotes.get(repository)
        if bare is None:
            return None
        repo = api_example("pulls-get")["base"]["repo"]
        owner, name = repository.split("/", 1)
        repo.update(
            {"full_name": repository, "name": name, "clone_url": f"file://{bare}",
             "default_branch": "main"}
        )  # fmt: skip
        repo["owner"]["login"] = owner
        return dict(repo)

    async def get_pull(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        pull = self._pull(request)
        bare = self.github.git_remotes.get((repo_of(request), int(request.match_info["number"])))
        if bare is not None:
            pull["head"]["sha"] = await branch_sha(bare, pull["head"]["ref"])
        return web.json_response(pull)

    async def list_pull_review_comments(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        repository, number = repo_of(request), int(request.match_info["number"])
        found = [
            c
            for c in sorted(self.github.review_comments.values(), key=lambda c: c["id"])
            if c["_repo"] == repository and c["_number"] == number
        ]
        return paginate(request, found)

    async def get_review_comment(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        comment = self.github.review_comments.get(int(request.match_info["comment_id"]))
        if comment is None or comment["_repo"] != repo_of(request):
            raise api_error(404, "Not Found")
        return web.json_response(public(comment))

    async def create_reply(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        repository, number = repo_of(request), int(request.match_info["number"])
        target = self.github.review_comments.get(int(request.match_info["comment_id"]))
        if target is None or target["_repo"] != repository or target["_number"] != number:
            raise api_error(404, "Not Found")
        if target.get("in_reply_to_id"):
            raise api_error(422, "in_reply_to_id: a reply must address the thread's first comment")
        body = await request.json()
        reply = api_example("pulls-create-reply-for-review-comment")
        comment_id = next(self.github.ids)
        now = github_time(self.github.now())
        reply.update(
            {
                "id": comment_id,
                "body": body["body"],
                "in_reply_to_id": target["id"],
                "path": target.get("path"),
                "line": target.get("line"),
                "diff_hunk": target.get("diff_hunk"),
                "commit_id": target.get("commit_id"),
                "user": self.github.bot_user(),
                "created_at": now,
                "updated_at": now,
                "author_association": "NONE",
                "pull_request_review_id": next(self.github.ids),
                "url": f"{self.github.base_url}/repos/{repository}/pulls/comments/{comment_id}",
            }
        )
        self.github.review_comments[comment_id] = {**reply, "_repo": repository, "_number": number}
        return web.json_response(reply, status=201)

    async def list_reviews(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        repository, number = repo_of(request), int(request.match_info["number"])
        found = [
            r
            for r in sorted(self.github.reviews.values(), key=lambda r: r["id"])
            if r["_repo"] == repository and r["_number"] == number
        ]
        return paginate(request, found)

    async def get_review(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        review = self.github.reviews.get(int(request.match_info["review_id"]))
        if review is None or review["_repo"] != repo_of(request):
            raise api_error(404, "Not Found")
        # REST spells the state in capitals (APPROVED); webhook payloads in lower case.
        return web.json_response({**public(review), "state": str(review.get("state", "")).upper()})

    async def list_review_comments_for_review(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        review = self.github.reviews.get(int(request.match_info["review_id"]))
        if review is None or review["_repo"] != repo_of(request):
            raise api_error(404, "Not Found")
        found = [
            self.github.review_comments[i]
            for i in review["_comment_ids"]
            if i in self.github.review_comments
        ]
        return paginate(request, found)

    async def create_review(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        body = await request.json()
        review = api_example("pulls-create-review")
        review.update(
            {
                "id": next(self.github.ids),
                "body": body.get("body"),
                "state": {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(
                    body.get("event", ""), "COMMENTED"
                ),
                "user": self.github.bot_user(),
            }
        )
        self.github.reviews[review["id"]] = {
            **review,
            "_repo": repo_of(request),
            "_number": int(request.match_info["number"]),
            "_comment_ids": [],
        }
        return web.json_response(review, status=200)

    async def list_issue_comments(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        found = self.github.comments_on(repo_of(request), int(request.match_info["number"]))
        return paginate(request, sorted(found, key=lambda c: c["id"]))

    async def create_issue_comment(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        repository, number = repo_of(request), int(request.match_info["number"])
        if (repository, number) not in self.github.pulls:
            raise api_error(404, "Not Found")
        body = await request.json()
        comment = api_example("issues-create-comment")
        comment_id = next(self.github.ids)
        now = github_time(self.github.now())
        comment.update(
            {
                "id": comment_id,
                "body": body["body"],
                "user": self.github.bot_user(),
                "created_at": now,
                "updated_at": now,
                "author_association": "NONE",
                "issue_url": f"{self.github.base_url}/repos/{repository}/issues/{number}",
                "url": f"{self.github.base_url}/repos/{repository}/issues/comments/{comment_id}",
            }
        )
        self.github.issue_comments[comment_id] = {**comment, "_repo": repository, "_number": number}
        return web.json_response(comment, status=201)

    async def _react(self, request: web.Request, subject: str, known: bool) -> web.Response:
        self.github.check_token(request)
        if not known:
            raise api_error(404, "Not Found")
        content = (await request.json())["content"]
        comment_id = int(request.match_info["comment_id"])
        for existing in self.github.reactions:
            if (existing["_subject"], existing["_comment_id"], existing["content"]) == (
                subject,
                comment_id,
                content,
            ):
                return web.json_response(public(existing), status=200)
        reaction = {
            "id": next(self.github.ids),
            "node_id": "MDg6UmVhY3Rpb24x",
            "user": self.github.bot_user(),
            "content": content,
            "created_at": github_time(self.github.now()),
            "_subject": subject,
            "_comment_id": comment_id,
        }
        self.github.reactions.append(reaction)
        return web.json_response(public(reaction), status=201)

    async def create_review_comment_reaction(self, request: web.Request) -> web.Response:
        known = int(request.match_info["comment_id"]) in self.github.review_comments
        return await self._react(request, "review_comment", known)

    async def create_issue_comment_reaction(self, request: web.Request) -> web.Response:
        known = int(request.match_info["comment_id"]) in self.github.issue_comments
        return await self._react(request, "issue_comment", known)

    async def create_check_run(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        body = await request.json()
        if not body.get("name") or not body.get("head_sha"):
            raise api_error(422, "Validation Failed")
        check_run = api_example("checks-create.in-progress")
        check_run_id = next(self.github.ids)
        status = body.get("status", "queued")
        check_run.update(
            {
                "id": check_run_id,
                "name": body["name"],
                "head_sha": body["head_sha"],
                "external_id": body.get("external_id", ""),
                "status": status,
                "conclusion": body.get("conclusion"),
                "output": {**check_run["output"], **(body.get("output") or {})},
                "actions": body.get("actions", []),
                "app": {**check_run["app"], "id": self.github.app_id, "slug": self.github.slug},
                "url": f"{self.github.base_url}/repos/{repo_of(request)}/check-runs/{check_run_id}",
            }
        )
        self.github.check_runs[check_run_id] = {**check_run, "_repo": repo_of(request)}
        self.github.check_run_history[check_run_id] = [(status, body.get("conclusion"))]
        return web.json_response(check_run, status=201)

    async def update_check_run(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        check_run_id = int(request.match_info["check_run_id"])
        check_run = self.github.check_runs.get(check_run_id)
        if check_run is None:
            raise api_error(404, "Not Found")
        body = await request.json()
        if body.get("status") == "completed" and body.get("conclusion") is None:
            raise api_error(422, "conclusion is required when status is completed")
        for key in ("status", "conclusion", "started_at", "completed_at", "actions"):
            if key in body:
                check_run[key] = body[key]
        if body.get("conclusion") and "status" not in body:
            check_run["status"] = "completed"
        if "output" in body:
            check_run["output"] = {**check_run["output"], **body["output"]}
        self.github.check_run_history[check_run_id].append(
            (check_run["status"], check_run["conclusion"])
        )
        return web.json_response(public(check_run))

    async def list_check_runs_for_ref(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/commits/{ref}/check-runs: the check runs on a commit (by
        sha), filtered by `check_name` and `status`; `filter=latest` (GitHub's default) keeps
        the most recent one of each name, `filter=all` every one."""
        self.github.check_token(request)
        repository, ref = repo_of(request), request.match_info["ref"]
        name, status = request.query.get("check_name"), request.query.get("status")
        found = [
            run
            for run in sorted(self.github.check_runs.values(), key=lambda run: run["id"])
            if run["_repo"] == repository
            and run["head_sha"] == ref
            and (name is None or run["name"] == name)
            and (status is None or run["status"] == status)
        ]
        if request.query.get("filter", "latest") == "latest":
            newest = {run["name"]: run for run in found}
            found = sorted(newest.values(), key=lambda run: run["id"], reverse=True)
        else:
            found.reverse()  # newest first, as GitHub lists them
        return paginate_key(request, "check_runs", found)

    async def get_permission(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        login = request.match_info["user"]
        permission = self.github.permissions.get((repo_of(request), login.lower()))
        if permission is None:
            raise api_error(404, f"{login} is not a user")
        role = {"admin": "admin", "maintain": "maintain", "write": "write"}.get(permission, "read")
        return web.json_response(
            {
                "permission": "write" if permission == "maintain" else permission,
                "role_name": role if permission != "none" else "none",
                "user": {"login": login, "type": "User"},
            }
        )

    async def get_contents(self, request: web.Request) -> web.Response:
        self.github.check_token(request)
        path = request.match_info["path"]
        text = self.github.contents.get((repo_of(request), path))
        if text is None:
            raise api_error(404, "Not Found")
        encoded = base64.encodebytes(text.encode()).decode()
        return web.json_response(
            {
                "type": "file",
                "encoding": "base64",
                "size": len(text.encode()),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": encoded,
                "sha": secrets.token_hex(20),
            }
        )
