"""bot/isolation/sandbox.py: timeout, output cap, scrubbed environment, streaming, bubblewrap
limits."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.isolation import sandbox
from tests.fakes.github import generate_app_key

needs_bwrap = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap not installed")


async def test_runs_a_shell_command_in_its_directory(tmp_path: Path) -> None:
    result = await sandbox.run_command("pwd; echo err >&2; exit 4", tmp_path)
    assert result.exit_code == 4 and not result.ok
    assert result.output.splitlines() == [str(tmp_path.resolve()), "err"]


async def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    witness = tmp_path / "witness"
    # A witness started alongside, with no timeout: the same kind of background child, later by
    # half a second; its command returns once the child has written (it holds the output pipe
    # until it exits). By then the killed command's child would have written too.
    killed, witnessed = await asyncio.gather(
        sandbox.run_command(
            f"(sleep 1; touch {marker}) & sleep 30", tmp_path, timeout_s=0.3, isolation="none"
        ),
        sandbox.run_command(f"(sleep 1.5; touch {witness}) &", tmp_path, isolation="none"),
    )
    assert killed.timed_out and killed.exit_code is None
    assert killed.duration_s < 5
    assert witnessed.ok and witness.exists()
    assert not marker.exists()


async def test_output_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    result = await sandbox.run_command(
        "for i in $(seq 1 5000); do echo line$i; done", tmp_path, output_cap_bytes=1000
    )
    assert result.truncated and len(result.output) < 1200
    assert result.output.startswith("line1\n") and result.output.endswith("line5000")
    assert "bytes of output cut" in result.output


async def test_lines_stream_to_the_callback_until_the_cap(tmp_path: Path) -> None:
    seen: list[str] = []

    async def collect(line: str) -> None:
        seen.append(line)

    await sandbox.run_command(
        "for i in $(seq 1 100); do echo l$i; done", tmp_path, on_line=collect, output_cap_bytes=50
    )
    assert seen[0] == "l1" and "output capped" in seen[-1] and len(seen) < 20


async def test_the_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "-----BEGIN secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    result = await sandbox.run_command("env", tmp_path, env={"PORT": "20000"})
    assert "secret" not in result.output
    assert "PORT=20000" in result.output and "PATH=" in result.output


@needs_bwrap
async def test_bwrap_keeps_writes_inside_the_directory(tmp_path: Path) -> None:
    inside = tmp_path / "work"
    inside.mkdir()
    outside = tmp_path / "outside.txt"  # under /tmp, which is private to the command
    system = Path("/usr/local/biagent-sandbox-probe")
    result = await sandbox.run_command(
        f"echo ok > here.txt && echo no > {outside} && echo no > {system}",
        inside,
        isolation="bwrap",
    )
    assert result.isolated and not result.ok and "Read-only file system" in result.output
    assert (inside / "here.txt").exists()
    assert not outside.exists() and not system.exists()


@needs_bwrap
async def test_bwrap_hides_listed_paths_and_opens_writable_ones(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    # In the working directory: the one place of tmp_path the command sees (/tmp is its own).
    secret = work / "biagent.db"
    secret.write_text("api token hash")
    shown = await sandbox.run_command(f"cat {secret}", work, isolation="bwrap")
    assert "api token hash" in shown.output  # readable unless hidden
    result = await sandbox.run_command(
        f"cat {secret}; echo cached > {cache}/x",
        work,
        hidden_paths=[secret],
        writable_paths=[cache],
        isolation="bwrap",
    )
    assert result.ok and "api token hash" not in result.output
    assert (cache / "x").read_text() == "cached\n"


@needs_bwrap
async def test_bwrap_can_switch_the_network_off(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # The real interpreter, not the venv's link to it: the sandbox's /tmp is private, and a
    # checkout under /tmp (as CI may use) would hide the venv from the command.
    python = os.path.realpath(sys.executable)
    probe = f"{python} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\""
    try:
        online = await sandbox.run_command(probe, tmp_path, isolation="bwrap")
        offline = await sandbox.run_command(probe, tmp_path, network=False, isolation="bwrap")
    finally:
        server.close()
    assert online.ok
    assert not offline.ok and "refused" in offline.output.lower()


async def test_stop_at_cap_stops_an_endless_writer_and_keeps_the_first_bytes(
    tmp_path: Path,
) -> None:
    result = await sandbox.run_command(
        "yes biagent", tmp_path, output_cap_bytes=1000, stop_at_cap=True, timeout_s=30
    )
    assert not result.timed_out and result.truncated
    assert result.output == "biagent\n" * 125


@needs_bwrap
async def test_bwrap_can_narrow_the_host_to_the_system_directories(tmp_path: Path) -> None:
    probe = "test -d /var/lib && echo seen"
    whole = await sandbox.run_command(probe, tmp_path, isolation="bwrap")
    narrowed = await sandbox.run_command(
        probe, tmp_path, visible_paths=sandbox.SYSTEM_PATHS, isolation="bwrap"
    )
    assert whole.ok and "seen" in whole.output
    assert not narrowed.ok and "seen" not in narrowed.output


@needs_bwrap
async def test_commands_cannot_read_the_database_or_the_app_key(tmp_path: Path) -> None:
    from bot.config import load_settings
    from bot.worktrees.service import hidden_from_commands

    # In the working directory: the one place of tmp_path the command sees (/tmp is its own).
    work = tmp_path / "work"
    work.mkdir()
    key = work / "app.pem"
    private_pem, _ = generate_app_key()
    key.write_text(private_pem)
    database = work / "biagent.db"
    database.write_text("api token hash")
    settings = load_settings(
        {
            "GITHUB_APP_ID": "1",
            "GITHUB_PRIVATE_KEY_PATH": str(key),
            "DATABASE_URL": f"sqlite:///{database}",
        }
    )
    shown = await sandbox.run_command(f"cat {key} {database}", work)
    assert "PRIVATE KEY" in shown.output and "api token hash" in shown.output  # unless hidden
    result = await sandbox.run_command(
        f"cat {key} {database}", work, hidden_paths=hidden_from_commands(settings)
    )
    assert "PRIVATE KEY" not in result.output and "api token hash" not in result.output
