"""How each environment variable's text becomes a setting: the readers `bot/config.py` names.

`Settings` (bot/config.py) marks each field with `Env(name, rule)`; a rule here reads that
variable's text, converts and checks it, and reports a bad value as one line on the
`Environment` (the problems `load_settings` raises as one `ConfigError`). `Secret` wraps what
must never be printed. Kept apart from the settings model so that model stays one screenful of
fields and defaults.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization


class Secret:
    """A secret value that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Environment:
    """The variables being read, and the problems found so far (one line each)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.refused: set[str] = set()

    def text(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def refuse(self, name: str, problem: str) -> None:
        self.problems.append(f"{name}: {problem}")
        self.refused.add(name)


class Rule(Protocol):
    """How a variable becomes a setting; a refused value is reported and gives `default`."""

    def read(self, environment: Environment, name: str, default: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Env:
    """Marks a settings field as read from the environment variable `name` by `rule`."""

    name: str
    rule: Rule


class Refused(ValueError):
    """A variable's text that its rule does not take; the message says why, in one line."""


class WhenSet:
    """A rule for a variable's text when it is set; an unset (or blank) variable keeps the
    default. Subclasses say how the text converts, raising `Refused`."""

    __slots__ = ()

    def read(self, environment: Environment, name: str, default: Any) -> Any:
        raw = environment.text(name)
        if raw is None:
            return default
        try:
            return self.convert(raw)
        except Refused as refusal:
            environment.refuse(name, str(refusal))
            return default

    def convert(self, raw: str) -> Any:
        raise NotImplementedError


class Text(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        return raw


class SecretText(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        return Secret(raw)


class AnyPath(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        return Path(raw)


class Present(WhenSet):
    """True when the variable is set: the value itself is read by a library, not by us."""

    __slots__ = ()

    def convert(self, raw: str) -> Any:
        return True


class Switch(WhenSet):
    """On unless the variable says 0, false, no or off."""

    __slots__ = ()

    def convert(self, raw: str) -> Any:
        return raw.lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class OneOf(WhenSet):
    choices: tuple[str, ...]

    def convert(self, raw: str) -> Any:
        if raw.upper() not in self.choices:
            raise Refused(f"one of {', '.join(self.choices)}; got {raw.upper()}")
        return raw.upper()


@dataclass(frozen=True, slots=True)
class Member(WhenSet):
    """A member of a string enum, by its lower-case value (BIAGENT_ROLE: all, web, worker)."""

    kind: type[enum.StrEnum]

    def convert(self, raw: str) -> Any:
        try:
            return self.kind(raw.lower())
        except ValueError:
            choices = ", ".join(member.value for member in self.kind)
            raise Refused(f"one of {choices}; got {raw.lower()}") from None


@dataclass(frozen=True, slots=True)
class WholeNumber(WhenSet):
    low: int
    high: int

    def convert(self, raw: str) -> Any:
        try:
            value = int(raw)
        except ValueError:
            raise Refused(f"expected a whole number, got {raw!r}") from None
        if not self.low <= value <= self.high:
            raise Refused(f"must be between {self.low} and {self.high}, got {value}")
        return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Duration(WhenSet):
    """Seconds, or a number with a unit: 30s, 5m, 1h, 3d."""

    low: float = 0.0

    def convert(self, raw: str) -> Any:
        match = _DURATION.match(raw.lower())
        if match is None:
            raise Refused(f"expected seconds or a duration like 30s, 5m, 1h; got {raw!r}")
        value = float(match.group(1)) * _UNITS[match.group(2)]
        if value < self.low:
            raise Refused(f"must be at least {self.low:g} seconds, got {raw!r}")
        return value


@dataclass(frozen=True, slots=True)
class Number(WhenSet):
    low: float = 0.0

    def convert(self, raw: str) -> Any:
        try:
            value = float(raw)
        except ValueError:
            raise Refused(f"expected a number, got {raw!r}") from None
        if value < self.low:
            raise Refused(f"must be at least {self.low:g}, got {raw!r}")
        return value


class Url(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        if not re.match(r"^https?://[^\s/]+", raw):
            raise Refused(f"expected an http(s):// URL, got {raw!r}")
        return raw.rstrip("/")


class Networks(WhenSet):
    """IP addresses or networks, comma-separated: `10.0.0.5, 192.168.0.0/16, ::1`."""

    __slots__ = ()

    def convert(self, raw: str) -> Any:
        found = []
        for part in filter(None, (piece.strip() for piece in raw.split(","))):
            try:
                found.append(ip_network(part, strict=False))
            except ValueError:
                raise Refused(f"{part!r} is not an IP address or network") from None
        return tuple(found)


class DatabaseUrl(WhenSet):
    """sqlite:///path, or postgresql://user:password@host:5432/db (postgres:// too)."""

    __slots__ = ()

    def convert(self, raw: str) -> Any:
        if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
            return raw
        scheme, _, rest = raw.partition("://")
        if scheme in ("postgresql", "postgres") and rest:
            return raw
        raise Refused(
            "expected sqlite:///path or postgresql://user:password@host:5432/database"
            f" (got a {raw.split(':', 1)[0]} URL)"
        )


class AppId(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        if not raw.isdigit():
            raise Refused(f"expected the app's numeric id, got {raw!r}")
        return raw


class ReadableFile(WhenSet):
    __slots__ = ()

    def convert(self, raw: str) -> Any:
        if not Path(raw).is_file():
            raise Refused(f"{raw} is not a readable file")
        return Path(raw)


PRIVATE_KEY_PATH = "GITHUB_PRIVATE_KEY_PATH"


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """The App's PEM key, inline (real newlines or `\\n` escapes) or from PRIVATE_KEY_PATH."""

    def read(self, environment: Environment, name: str, default: Any) -> Any:
        inline = environment.environ.get(name, "").strip()
        path = environment.text(PRIVATE_KEY_PATH)
        if inline and path:
            environment.refuse(f"{name} and {PRIVATE_KEY_PATH}", "set one, not both")
            environment.refused.update((name, PRIVATE_KEY_PATH))
            return default
        if path:
            try:
                inline = Path(path).read_text(encoding="utf-8").strip()
            except OSError as error:
                environment.refuse(PRIVATE_KEY_PATH, f"cannot read {path}: {error.strerror}")
                return default
        if not inline:
            return default
        source = PRIVATE_KEY_PATH if path else name
        try:
            return pem_private_key(inline)
        except Refused as refusal:
            environment.refuse(source, str(refusal))
            return default


def pem_private_key(text: str) -> Secret:
    """A PEM private key (real newlines or `\\n` escapes) that can sign the App's JWTs, so a
    key that cannot be read fails where it is read, not at the first call to GitHub. Shared by
    GITHUB_PRIVATE_KEY and the manifest flow's saved credentials (bot/github/credentials.py)."""
    pem = text.strip().replace("\\r", "").replace("\\n", "\n").replace("\r\n", "\n")
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        raise Refused("not a PEM private key (no BEGIN ... PRIVATE KEY line)")
    try:
        serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Refused(
            "the PEM private key cannot be read (damaged, or protected by a password)"
        ) from None
    return Secret(pem)
