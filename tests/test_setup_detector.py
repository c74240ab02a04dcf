"""SetupDetector over a table of sample repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.worktrees.setup_detector import RepositoryConfigError, SetupDetector

PYPROJECT_DEV = '[project]\nname = "x"\n[project.optional-dependencies]\ndev = ["pytest"]\n'
PACKAGE_TEST = '{"name": "x", "scripts": {"test": "jest"}}'

SAMPLES: list[tuple[str, dict[str, str], str | None, str | None, str, bool]] = [
    # name, files, setup, test, source, confident
    (
        "biagent.yml wins",
        {".github/biagent.yml": "setup: [make deps, make db]\ntest: make t\n", "uv.lock": ""},
        "make deps && make db",
        "make t",
        "biagent.yml",
        True,
    ),
    (
        "uv",
        {"pyproject.toml": PYPROJECT_DEV, "uv.lock": ""},
        "uv sync --frozen",
        "uv run pytest",
        "uv",
        True,
    ),
    (
        "poetry by lock",
        {"pyproject.toml": "[tool.poetry]\nname='x'\n", "poetry.lock": ""},
        "poetry install --no-interaction",
        "poetry run pytest",
        "poetry",
        True,
    ),
    (
        "pip requirements",
        {"requirements.txt": "flask\n", "requirements-dev.txt": "pytest\n"},
        "python3 -m venv .venv"
        " && .venv/bin/pip install -r requirements.txt -r requirements-dev.txt",
        ".venv/bin/python -m pytest",
        "pip",
        True,
    ),
    (
        "pip with a dev extra",
        {"pyproject.toml": PYPROJECT_DEV},
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'",
        ".venv/bin/python -m pytest",
        "pip",
        True,
    ),
    (
        "npm",
        {"package.json": PACKAGE_TEST, "package-lock.json": "{}"},
        "npm ci",
        "npm test",
        "npm",
        True,
    ),
    (
        "pnpm",
        {"package.json": PACKAGE_TEST, "pnpm-lock.yaml": ""},
        "pnpm install --frozen-lockfile",
        "pnpm test",
        "pnpm",
        True,
    ),
    (
        "yarn without a test script",
        {"package.json": "{}", "yarn.lock": ""},
        "yarn install --frozen-lockfile",
        None,
        "yarn",
        True,
    ),
    ("go", {"go.mod": "module x\n"}, "go mod download", "go test ./...", "go", True),
    ("cargo", {"Cargo.toml": "[package]\nname='x'\n"}, "cargo fetch", "cargo test", "cargo", True),
    (
        "Makefile ties two ecosystems",
        {
            "go.mod": "",
            "package.json": "{}",
            "package-lock.json": "{}",
            "Makefile": "setup:\n\tx\ncheck:\n\ty\n",
        },
        "make setup",
        "make check",
        "make",
        True,
    ),
    ("Makefile test only", {"Makefile": "test:\n\tpytest\n"}, None, "make test", "make", True),
    ("nothing at all", {"README.md": "hi"}, None, None, "none", False),
    (
        "two lockfiles disagree",
        {"package.json": "{}", "package-lock.json": "{}", "yarn.lock": ""},
        "yarn install --frozen-lockfile",
        None,
        "yarn",
        False,
    ),
    (
        "pyproject without a lock or dev extra",
        {"pyproject.toml": "[project]\nname='x'\n"},
        "python3 -m venv .venv && .venv/bin/pip install -e .",
        ".venv/bin/python -m pytest",
        "pip",
        False,
    ),
    (
        "two ecosystems, no Makefile",
        {"go.mod": "", "Cargo.toml": ""},
        "go mod download && cargo fetch",
        "go test ./...",
        "go+cargo",
        False,
    ),
]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize(
    ("files", "setup", "test", "source", "confident"),
    [sample[1:] for sample in SAMPLES],
    ids=[sample[0] for sample in SAMPLES],
)
def test_detection(
    tmp_path: Path,
    files: dict[str, str],
    setup: str | None,
    test: str | None,
    source: str,
    confident: bool,
) -> None:
    write(tmp_path, files)
    plan = SetupDetector().detect(tmp_path, repository="octo/x")
    assert (plan.setup_command, plan.test_command, plan.source, plan.confident) == (
        setup,
        test,
        source,
        confident,
    )
    assert (plan.question is None) == confident


def test_unsure_plan_offers_choices(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "", "Cargo.toml": ""})
    plan = SetupDetector().detect(tmp_path, repository="octo/x")
    assert plan.choices == ("go mod download && cargo fetch", "go mod download", "cargo fetch")
    assert "octo/x" in (plan.question or "")


def test_a_stored_answer_settles_an_unsure_repository(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "hi"})
    plan = SetupDetector().detect(
        tmp_path, repository="octo/x", answered_setup="./bootstrap.sh", answered_test="./t"
    )
    assert (plan.setup_command, plan.test_command, plan.source, plan.confident) == (
        "./bootstrap.sh",
        "./t",
        "answer",
        True,
    )


def test_empty_answer_means_no_setup(tmp_path: Path) -> None:
    plan = SetupDetector().detect(tmp_path, repository="octo/x", answered_setup="")
    assert plan.setup_command is None and plan.confident


def test_copy_files_come_from_biagent_yml(tmp_path: Path) -> None:
    write(tmp_path, {".github/biagent.yml": "copy_files: [.env]\n", "go.mod": ""})
    plan = SetupDetector().detect(tmp_path, repository="octo/x")
    assert plan.copy_files == (".env",) and plan.source == "go"


def test_a_broken_biagent_yml_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {".github/biagent.yml": "setup: {oops: 1}\n"})
    with pytest.raises(RepositoryConfigError, match="setup must be"):
        SetupDetector().detect(tmp_path, repository="octo/x")


def test_a_symlinked_config_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yml"
    outside.write_text("setup: echo from outside\n")
    for linked in (".github/biagent.yml", ".github"):
        worktree = tmp_path / linked.replace("/", "_")
        if linked == ".github":
            worktree.mkdir()
            (tmp_path / "elsewhere").mkdir(exist_ok=True)
            (tmp_path / "elsewhere" / "biagent.yml").write_text("setup: echo elsewhere\n")
            (worktree / ".github").symlink_to(tmp_path / "elsewhere")
        else:
            (worktree / ".github").mkdir(parents=True)
            (worktree / ".github" / "biagent.yml").symlink_to(outside)
        with pytest.raises(RepositoryConfigError, match="symlink"):
            SetupDetector().detect(worktree, repository="octo/app")
