"""The one git runner: every git command biagent runs, as an asyncio subprocess, with the
installation token passed per command only. Shared infrastructure: worktrees, the git jail
(bot/isolation/) and the review engine all run git through `run_git`.

The token reaches git as command-scoped configuration (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/
`GIT_CONFIG_VALUE_n`, the environment form of `git -c http.extraHeader=...`): it is never in a
remote URL, `.git/config`, the argument list (which `ps` shows to every local user), a log line
or an error message. Credential helpers are switched off for the same command, so no helper
stores it either.

Every git command biagent runs (here, and the agents' change listing in bot/agents/tools.py,
through `git_environment`) also switches off what a repository's configuration could make it
run: `NO_REPOSITORY_CODE` below is the one list. Those commands run outside any jail, in
worktrees and a mirror that an agent's bash or a setup command wrote to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bot.config import Secret

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 900.0
# What git gets of the service's environment: an allow-list, so no key or token of the service
# (ANTHROPIC_API_KEY, GITHUB_PRIVATE_KEY, JIRA_API_TOKEN...) reaches git or what it runs, and
# no GIT_* variable steers our commands.
PASSED_TO_GIT = (
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
)  # fmt: skip

# Command-scoped configuration outranks every configuration file, so these hold whatever a
# repository's `config` (or a file it includes) says. What has no single key to switch off,
# filter/textconv/merge drivers (`filter.<name>.clean`...), `include.path`, `core.worktree`,
# `url.<base>.insteadOf`, a `commondir` pointing at another repository, can only come from
# files the jail keeps read-only (bot/isolation/git_guard.py, `guard_git_dirs`); diff commands
# of ours also pass `--no-ext-diff --no-textconv` (an empty `diff.external` would not switch it
# off), and fetches from a named remote pass `ORIGIN_UPLOAD_PACK` (`remote.<name>.uploadpack`
# takes the file's value first, whatever the command line says).
NO_REPOSITORY_CODE: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),  # every hook: post-checkout, reference-transaction, ...
    ("core.fsmonitor", "false"),  # a program run before status, add, reset, switch
    ("core.sshCommand", "ssh"),  # the plain ssh client, not one the repository names
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("commit.gpgSign", "false"),  # signing or verifying runs gpg.program
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "gpg"),
    ("gpg.ssh.program", "ssh-keygen"),
    ("gpg.x509.program", "gpgsm"),
    ("protocol.ext.allow", "never"),  # `ext::<command>` URLs run a command
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("credential.helper", ""),  # and no helper ever stores the token
    ("core.askPass", ""),
)
ORIGIN_UPLOAD_PACK = "--upload-pack=git-upload-pack"


class GitError(RuntimeError):
    """A git command failed; the message has its arguments and stderr, never a credential."""

    def __init__(self, args: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.args_run = tuple(args)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"git {' '.join(args)} exited {returncode}: {stderr.strip()[-2000:]}")


@dataclass(frozen=True, slots=True)
class GitOutput:
    stdout: str
    stderr: str
    returncode: int
    raw: bytes = b""  # stdout as git wrote it (a blob's bytes); not scrubbed: never log it


def auth_header(token: Secret) -> str:
    """The header GitHub accepts for an installation token over HTTPS (as actions/checkout)."""
    basic = base64.b64encode(f"x-access-token:{token.reveal()}".encode()).decode()
    return f"Authorization: Basic {basic}"


def git_environment(token: Secret | None = None) -> dict[str, str]:
    """The allow-listed part of the service's environment (`PASSED_TO_GIT`, `LC_*`), plus
    command-scoped configuration: `NO_REPOSITORY_CODE` and, with a token, its
    `http.extraHeader`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED_TO_GIT or name.startswith("LC_")
    }
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    config = list(NO_REPOSITORY_CODE)
    if token is not None:
        config.append(("http.extraHeader", auth_header(token)))
    environment["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
    environment["GIT_TERMINAL_PROMPT"] = "0"
    environment.setdefault("GIT_AUTHOR_NAME", "biagent")
    environment.setdefault("GIT_AUTHOR_EMAIL", "biagent@localhost")
    environment.setdefault("GIT_COMMITTER_NAME", "biagent")
    environment.setdefault("GIT_COMMITTER_EMAIL", "biagent@localhost")
    return environment


def _scrub(text: str, token: Secret | None) -> str:
    if token is None:
        return text
    for secret_form in (token.reveal(), auth_header(token)):
        text = text.replace(secret_form, "********")
    return text


async def run_git(
    *args: str,
    cwd: Path | None = None,
    token: Secret | None = None,
    check: bool = True,
    optional_locks: bool = True,
    timeout_s: float = GIT_TIMEOUT_S,
    stdin: IO[bytes] | None = None,
) -> GitOutput:
    """Run one git command. `optional_locks=False` is for polling: it never takes index.lock.
    `stdin` is an open file git reads (a pack for `index-pack --stdin`); nothing by default."""
    argv = ["git"]
    if not optional_locks:
        argv.append("--no-optional-locks")
    argv += args
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=None if cwd is None else str(cwd),
        env=git_environment(token),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Its own process group, so a stop kills git's helpers too (upload-pack, remote
        # helpers): one left alive would hold the pipes open and `wait()` would never return.
        start_new_session=True,
    )
    try:
        stdout_bytes, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        raise GitError(args, None, f"timed out after {timeout_s:.0f}s") from None
    except asyncio.CancelledError:
        # A cancelled caller (shutdown) must not leave git running behind it.
        _kill_group(process)
        await asyncio.shield(process.wait())
        raise
    stdout = _scrub(stdout_bytes.decode("utf-8", errors="replace"), token)
    stderr = _scrub(stderr_bytes.decode("utf-8", errors="replace"), token)
    returncode = process.returncode if process.returncode is not None else -1
    if check and returncode != 0:
        raise GitError(args, returncode, stderr)
    return GitOutput(stdout, stderr, returncode, stdout_bytes if token is None else b"")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
