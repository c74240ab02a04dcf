"""SetupDetector: how to prepare a worktree of a repository, and how to run its tests.

Sources, in order: the repository's `.github/biagent.yml` (`setup`, `test`, `copy_files`); then
the answer a person gave for this repository earlier; then detection from the files at the
root: uv, poetry or pip (pyproject.toml, requirements.txt), pnpm, yarn or npm (by lockfile),
go.mod, Cargo.toml, and Makefile targets. When detection is unsure (nothing found, two
lockfiles that disagree, several ecosystems and no Makefile target tying them together) the
plan carries a question and suggested answers; the manager asks a person and stores the answer
per repository (docs/worktrees.md).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_PATH = ".github/biagent.yml"
MAKE_SETUP_TARGETS = ("setup", "install", "bootstrap", "deps")
MAKE_TEST_TARGETS = ("test", "check")
_MAKE_TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", re.MULTILINE)


class RepositoryConfigError(ValueError):
    """`.github/biagent.yml` is present but unusable."""


@dataclass(frozen=True, slots=True)
class SetupPlan:
    setup_commands: tuple[str, ...]
    test_command: str | None
    source: str  # biagent.yml, answer, uv, poetry, pip, npm, pnpm, yarn, go, cargo, make, ...
    confident: bool
    copy_files: tuple[str, ...] = ()
    question: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def setup_command(self) -> str | None:
        """The setup as one shell command (None when there is nothing to run)."""
        return " && ".join(self.setup_commands) if self.setup_commands else None


@dataclass(frozen=True, slots=True)
class _Candidate:
    ecosystem: str
    setup: str
    test: str | None
    sure: bool = True
    note: str = ""


@dataclass(frozen=True, slots=True)
class RepositoryConfig:
    """What `.github/biagent.yml` says about worktrees (other keys belong to other concerns)."""

    setup: tuple[str, ...] | None
    test: str | None
    copy_files: tuple[str, ...] = field(default=())


def _commands(value: Any, key: str) -> tuple[str, ...]:
    if value is None or value == "" or value is False:
        return ()
    if isinstance(value, str):
        return (value.strip(),)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise RepositoryConfigError(f"{CONFIG_PATH}: {key} must be a command or a list of commands")


MAX_CONFIG_BYTES = 256 * 1024


def _config_text(root: Path) -> str | None:
    """The text of `.github/biagent.yml`, None when there is none; a symlinked config (or
    `.github`), which could point out of the worktree, or one that is not a regular file or
    too large, is refused."""
    path = root / CONFIG_PATH
    for part in (path.parent, path):
        if part.is_symlink():
            raise RepositoryConfigError(f"{CONFIG_PATH}: a symlink is not read; commit the file")
    if not path.exists():
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise RepositoryConfigError(f"{CONFIG_PATH}: cannot be read ({error})") from error
    with os.fdopen(descriptor, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise RepositoryConfigError(f"{CONFIG_PATH}: not a regular file")
        if status.st_size > MAX_CONFIG_BYTES:
            raise RepositoryConfigError(f"{CONFIG_PATH}: larger than {MAX_CONFIG_BYTES} bytes")
        return opened.read(MAX_CONFIG_BYTES).decode("utf-8", errors="replace")


def read_repository_config(root: Path) -> RepositoryConfig | None:
    text = _config_text(root)
    if text is None:
        return None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RepositoryConfigError(f"{CONFIG_PATH}: not valid YAML ({error})") from error
    if not isinstance(loaded, dict):
        raise RepositoryConfigError(f"{CONFIG_PATH}: expected a mapping at the top")
    copy_files = loaded.get("copy_files") or []
    if not isinstance(copy_files, list) or not all(isinstance(item, str) for item in copy_files):
        raise RepositoryConfigError(f"{CONFIG_PATH}: copy_files must be a list of paths")
    test = _commands(loaded.get("test"), "test")
    return RepositoryConfig(
        setup=_commands(loaded["setup"], "setup") if "setup" in loaded else None,
        test=" && ".join(test) if test else None,
        copy_files=tuple(copy_files),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def make_targets(root: Path) -> set[str]:
    makefile = next(
        (
            root / name
            for name in ("Makefile", "makefile", "GNUmakefile")
            if (root / name).is_file()
        ),
        None,
    )
    if makefile is None:
        return set()
    return set(_MAKE_TARGET.findall(makefile.read_text(encoding="utf-8", errors="replace")))


def _python(root: Path) -> _Candidate | None:
    pyproject = _read_toml(root / "pyproject.toml") if (root / "pyproject.toml").is_file() else {}
    if (root / "uv.lock").is_file():
        return _Candidate("uv", "uv sync --frozen", "uv run pytest")
    if (root / "poetry.lock").is_file() or "poetry" in pyproject.get("tool", {}):
        return _Candidate("poetry", "poetry install --no-interaction", "poetry run pytest")
    venv = "python3 -m venv .venv"
    if (root / "requirements.txt").is_file():
        installs = ["-r requirements.txt"]
        for extra in ("requirements-dev.txt", "requirements-test.txt", "dev-requirements.txt"):
            if (root / extra).is_file():
                installs.append(f"-r {extra}")
        return _Candidate(
            "pip",
            f"{venv} && .venv/bin/pip install {' '.join(installs)}",
            ".venv/bin/python -m pytest",
        )
    if pyproject or (root / "setup.py").is_file():
        extras = pyproject.get("project", {}).get("optional-dependencies", {})
        chosen = next((name for name in ("dev", "test", "tests") if name in extras), None)
        target = f"'.[{chosen}]'" if chosen else "."
        # Without a lockfile or a dev extra we cannot tell how the project installs its tests.
        return _Candidate(
            "pip",
            f"{venv} && .venv/bin/pip install -e {target}",
            ".venv/bin/python -m pytest",
            sure=chosen is not None,
            note="pyproject.toml without a lockfile or a dev extra",
        )
    return None


def _node(root: Path) -> _Candidate | None:
    if not (root / "package.json").is_file():
        return None
    scripts = _read_json(root / "package.json").get("scripts") or {}
    has_test = isinstance(scripts, dict) and "test" in scripts
    lockfiles = {
        "pnpm": (root / "pnpm-lock.yaml").is_file(),
        "yarn": (root / "yarn.lock").is_file(),
        "npm": (root / "package-lock.json").is_file() or (root / "npm-shrinkwrap.json").is_file(),
    }
    present = [name for name, found in lockfiles.items() if found]
    installs = {
        "pnpm": "pnpm install --frozen-lockfile",
        "yarn": "yarn install --frozen-lockfile",
        "npm": "npm ci",
    }
    if len(present) == 1:
        manager = present[0]
        return _Candidate(manager, installs[manager], f"{manager} test" if has_test else None)
    if not present:
        return _Candidate(
            "npm", "npm install", "npm test" if has_test else None, False, "no lockfile"
        )
    return _Candidate(
        present[0],
        installs[present[0]],
        f"{present[0]} test" if has_test else None,
        sure=False,
        note=f"lockfiles of {' and '.join(present)} disagree",
    )


def _go(root: Path) -> _Candidate | None:
    if (root / "go.mod").is_file():
        return _Candidate("go", "go mod download", "go test ./...")
    return None


def _cargo(root: Path) -> _Candidate | None:
    if (root / "Cargo.toml").is_file():
        return _Candidate("cargo", "cargo fetch", "cargo test")
    return None


class SetupDetector:
    """Reads a checked-out worktree and says how to set it up; never runs anything."""

    def detect(
        self,
        root: Path,
        *,
        repository: str,
        answered_setup: str | None = None,
        answered_test: str | None = None,
    ) -> SetupPlan:
        config = read_repository_config(root)
        copy_files = config.copy_files if config else ()
        if config is not None and config.setup is not None:
            return SetupPlan(
                config.setup,
                config.test or answered_test,
                "biagent.yml",
                True,
                copy_files,
            )
        configured_test = config.test if config else None
        if answered_setup is not None:
            setup = (answered_setup.strip(),) if answered_setup.strip() else ()
            test = configured_test or answered_test
            return SetupPlan(setup, test, "answer", True, copy_files)
        plan = self._detect_from_files(root, repository)
        test = configured_test or answered_test or plan.test_command
        return SetupPlan(
            plan.setup_commands,
            test,
            plan.source,
            plan.confident,
            copy_files,
            plan.question,
            plan.choices,
        )

    def _detect_from_files(self, root: Path, repository: str) -> SetupPlan:
        found = [
            candidate
            for candidate in (_python(root), _node(root), _go(root), _cargo(root))
            if candidate is not None
        ]
        targets = make_targets(root)
        make_setup = next((f"make {t}" for t in MAKE_SETUP_TARGETS if t in targets), None)
        make_test = next((f"make {t}" for t in MAKE_TEST_TARGETS if t in targets), None)
        if len(found) == 1 and found[0].sure:
            only = found[0]
            return SetupPlan((only.setup,), only.test or make_test, only.ecosystem, True)
        if make_setup is not None:
            # The project's own entry point ties several ecosystems (or a vague one) together.
            test = make_test or (found[0].test if len(found) == 1 else None)
            return SetupPlan((make_setup,), test, "make", True)
        if not found:
            if make_test is not None:
                return SetupPlan((), make_test, "make", True)
            return SetupPlan(
                (),
                None,
                "none",
                False,
                question=(
                    f"No setup found in {repository} (no lockfile, manifest or Makefile"
                    " target). What command prepares a fresh checkout? Answer with an empty"
                    " command if none is needed."
                ),
                choices=("",),
            )
        combined = " && ".join(candidate.setup for candidate in found)
        notes = "; ".join(candidate.note for candidate in found if candidate.note)
        ecosystems = ", ".join(candidate.ecosystem for candidate in found)
        question = f"Unsure how to set up {repository} (found {ecosystems}"
        question += f"; {notes})." if notes else ")."
        question += " Which command prepares a fresh checkout?"
        choices = tuple(dict.fromkeys([combined, *(candidate.setup for candidate in found)]))
        tests = [candidate.test for candidate in found if candidate.test]
        return SetupPlan(
            tuple(candidate.setup for candidate in found),
            make_test or (tests[0] if tests else None),
            "+".join(candidate.ecosystem for candidate in found),
            False,
            question=question,
            choices=choices,
        )
