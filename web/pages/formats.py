"""What every page template may call: times for the browser to show in its own zone, links.

Times are rendered as `<time datetime="...Z">` with the UTC text inside; web/static/times.js
rewrites the text in the browser's zone and counts down to `.countdown` times, so a page shows
local times and stays readable without script. Everything goes through markupsafe: a value
that came from a ticket or an agent is escaped even inside an attribute.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import jinja2
from aiohttp import web
from markupsafe import Markup

from storage.timestamps import to_text
from web.keys import CLOCK


def instant_of(stamp: str | None) -> datetime | None:
    """A stored or JIRA time (`...Z`, `+0000`, `+00:00`; a bare one is UTC), else None."""
    if not stamp:
        return None
    try:
        instant = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def iso(stamp: str | None) -> str:
    """ISO 8601 in UTC with milliseconds: what every browser's `Date` reads."""
    instant = instant_of(stamp)
    if instant is None:
        return ""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_text(stamp: str | None) -> str:
    instant = instant_of(stamp)
    return "" if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def when(stamp: str | None, css_class: str = "", text: str | None = None) -> Markup:
    """`<time>` for a stored time (the text as given when it is not one); a dash for none.
    Its text is the UTC time unless `text` is given."""
    if not stamp:
        return Markup('<span class="empty">—</span>')
    if instant_of(stamp) is None:
        return Markup("<span>{}</span>").format(stamp)
    return Markup('<time datetime="{}" class="{}" title="{}">{}</time>').format(
        iso(stamp), css_class, utc_text(stamp), utc_text(stamp) if text is None else text
    )


def time_left(seconds: float) -> str:
    """What a countdown says, as web/static/times.js words it: "in 20 s", "in 2 min 05 s"."""
    whole = math.ceil(seconds)
    if whole <= 0:
        return "now"
    if whole < 60:
        return f"in {whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"in {minutes} min {whole % 60:02d} s"
    return f"in {minutes // 60} h {minutes % 60} min"


def countdown(stamp: str | None, now: datetime) -> Markup:
    """A time the browser counts down to (a review batch's due time); the server's count at
    `now` until the script takes over."""
    instant = instant_of(stamp)
    if instant is None:
        return when(stamp)
    return when(stamp, "countdown", time_left((instant - now).total_seconds()))


def size_text(size_bytes: int | None) -> str:
    """1536 -> "1.5 KiB"."""
    if size_bytes is None:
        return "—"
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # not reached: the loop ends at GiB


UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration_text(seconds: float | None) -> str:
    """In its largest unit and the next: 90 -> "1 min 30 s", 93784 -> "1 d 2 h"."""
    if seconds is None:
        return "—"
    whole = max(0, int(seconds))
    for index, (unit, length) in enumerate(UNITS):
        if whole < length and unit != "s":
            continue
        text = f"{whole // length} {unit}"
        if index + 1 < len(UNITS):
            next_unit, next_length = UNITS[index + 1]
            rest = whole % length // next_length
            if rest:
                text += f" {rest} {next_unit}"
        return text
    return "0 s"  # not reached: seconds always match


def web_link(url: str | None) -> str | None:
    """`url` when it is an http(s) address; escaping alone does not defuse `javascript:`."""
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def install(env: jinja2.Environment, app: web.Application) -> None:
    """Make the helpers callable from every template. `server_now()` is the server's time,
    which a page's script sets against the browser's own, so a countdown is right even when
    the two clocks disagree (and under a test's manual clock)."""
    env.globals.update(
        when=when,
        countdown=lambda stamp: countdown(stamp, app[CLOCK].now()),
        link=web_link,
        size_text=size_text,
        duration_text=duration_text,
        server_now=lambda: iso(to_text(app[CLOCK].now())),
    )
