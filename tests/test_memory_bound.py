"""Anonymous clients cannot exhaust the server's memory: 32 concurrent 25 MB bodies and 16 gzip
bombs, unsigned or wrongly signed, sent to the real server (`python -m bot`) while its resident
memory is sampled; the peak stays within 300 MB of the baseline and every answer is a refusal."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from pathlib import Path

import aiohttp

from tests.bot_process import BotProcess
from tests.live_server import live_server

MIB = 1024 * 1024
BIG_BODY = 25 * MIB - 4096  # just under GitHub's cap: the declared length alone admits it
ALLOWED_GROWTH = 300 * MIB
REFUSALS = {401, 413, 503}


def gzip_bomb(inflated: int = 200 * MIB) -> bytes:
    """About 200 KB of gzip that inflates to `inflated` zero bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join(packer.compress(zeros) for _ in range(inflated // MIB)) + packer.flush()


def headers(n: int, *, gzip: bool = False) -> dict[str, str]:
    """Every other request carries a wrong signature (so it is read), the rest none at all."""
    sent = {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"load-{n}"}
    sent["Content-Type"] = "application/json"
    if n % 2:
        sent["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    if gzip:
        sent["Content-Encoding"] = "gzip"
    return sent


async def post(session: aiohttp.ClientSession, url: str, body: bytes, **options: object) -> int:
    try:
        async with session.post(url, data=body, **options) as response:  # type: ignore[arg-type]
            return response.status
    except aiohttp.ClientError as error:
        return -1 if "reset" in str(error).lower() else -2


async def sample_peak(server: BotProcess, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], server.rss_bytes())
        await asyncio.sleep(0.005)


async def test_big_bodies_and_gzip_bombs_keep_memory_within_300_mb_of_baseline(
    tmp_path: Path,
) -> None:
    big, bomb = bytes(BIG_BODY), gzip_bomb()
    assert len(bomb) < 300 * 1024
    async with live_server(tmp_path) as server:
        url = f"{server.base}/webhooks/github"
        baseline = server.rss_bytes()
        peak = [baseline]
        sampler = asyncio.create_task(sample_peak(server, peak))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            sends = [
                post(session, url, big, headers=headers(n), expect100=n % 3 == 0) for n in range(32)
            ]
            sends += [post(session, url, bomb, headers=headers(n, gzip=True)) for n in range(16)]
            statuses = await asyncio.gather(*sends)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        log = server.log(tail=None)
    print(f"RSS baseline {baseline / MIB:.0f} MB, peak {peak[0] / MIB:.0f} MB; {statuses}")
    assert peak[0] - baseline < ALLOWED_GROWTH
    assert set(statuses) <= REFUSALS, statuses
    assert "Traceback" not in log and " ERROR " not in log
