"""The entry point, `python -m bot`: read settings, print what is on and off, serve (within the
process's limits: web/serving.py).

The one module of bot/ that may import web/ (docs/design.md, Layers). `python -m bot rotate-token`
replaces a generated API token and prints the new login URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import web

from bot.config import ConfigError, Settings, load_settings


def _print_banner(settings: Settings) -> None:
    print("biagent starting", flush=True)
    for line in settings.summary():
        print(f"  {line}", flush=True)


def _login_hint(app: web.Application, settings: Settings) -> None:
    from web.keys import GENERATED_TOKEN

    base = settings.base_url()
    generated = app.get(GENERATED_TOKEN)
    if generated:
        print(f"  API token generated (kept hashed): log in at {base}/login?token={generated}")
    elif settings.api_token is not None:
        print(f"  status page: {base}/login?token=<your BIAGENT_API_TOKEN>")
    else:
        print(
            f"  status page: {base}/ with the token printed on first start"
            " (python -m bot rotate-token makes a new one)"
        )
    print(f"  serving on http://{settings.host}:{settings.port}", flush=True)


async def _rotate(settings: Settings) -> int:
    from bot import api_token
    from storage.database import Database

    db = await Database.open(settings.database_url, **settings.database_options())
    try:
        await db.migrate()
        _, token = await api_token.rotate(db)
    finally:
        await db.close()
    print(f"new API token: log in at {settings.base_url()}/login?token={token.reveal()}")
    print("restart the server for it to take effect")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(os.environ)
    except ConfigError as error:
        print("biagent: invalid configuration:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args[:1] == ["rotate-token"]:
        return asyncio.run(_rotate(settings))
    if args:
        print("usage: python -m bot [rotate-token]", file=sys.stderr)
        return 2
    from web import server_logs, serving
    from web.app import AccessLogger, create_app

    server_logs.install()
    _print_banner(settings)
    app = create_app(settings)

    async def announce(app: web.Application) -> None:
        _login_hint(app, settings)

    app.on_startup.append(announce)
    asyncio.run(serving.serve(app, settings, AccessLogger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
