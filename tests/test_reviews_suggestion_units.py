"""bot/reviews/suggestions.py without a server: reading the block, placing it from GitHub's JSON,
applying it as GitHub's "Commit suggestion" does, and carrying its lines onto a later head
(examples, a real `git diff`, and properties)."""

from __future__ import annotations

import asyncio
import difflib
import subprocess
from pathlib import Path

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.reviews.suggestion_run import (
    Planned,
    already_applied,
    applied_ids,
    co_author,
    commit_message,
)
from bot.reviews.suggestions import (
    Author,
    CommentPosition,
    Hunk,
    Place,
    Suggestion,
    Unapplicable,
    apply_suggestion,
    carry_range,
    find_suggestion,
    lines_of,
    parse_hunks,
    place_of,
)
from tests.helpers import load_json

# -- the block ---------------------------------------------------------------------------------


def test_a_suggestion_block_is_read_with_the_text_around_it_ignored() -> None:
    body = "Use a comma:\n```suggestion\n    return 'Hello, ' + name\n```\nThanks!"
    assert find_suggestion(body) == Suggestion(("    return 'Hello, ' + name",))


def test_a_body_written_with_crlf_gives_lines_without_carriage_returns() -> None:
    body = "nit\r\n```suggestion\r\nfirst\r\nsecond\r\n```\r\n"
    assert find_suggestion(body) == Suggestion(("first", "second"))


def test_an_empty_block_deletes_and_an_empty_line_is_a_line() -> None:
    assert find_suggestion("```suggestion\n```") == Suggestion(())
    assert find_suggestion("```suggestion\n\n```") == Suggestion(("",))


def test_longer_and_tilde_fences_hold_backticks() -> None:
    body = "````suggestion\n```python\nx = 1\n```\n````"
    assert find_suggestion(body) == Suggestion(("```python", "x = 1", "```"))
    assert find_suggestion("~~~suggestion\na\n~~~") == Suggestion(("a",))


def test_an_indented_fence_strips_its_indent_from_the_lines() -> None:
    assert find_suggestion("  ```suggestion\n    a\n b\n  ```") == Suggestion(("  a", "b"))


def test_an_unclosed_block_runs_to_the_end_of_the_body() -> None:
    assert find_suggestion("```suggestion\na\nb\n") == Suggestion(("a", "b"))


def test_no_block_an_example_inside_another_block_or_another_language_is_none() -> None:
    assert find_suggestion("Please rename this.") is None
    assert find_suggestion("````\n```suggestion\nx\n```\n````") is None
    assert find_suggestion("```python\nx = 1\n```") is None
    assert find_suggestion("    ```suggestion\n    x\n    ```") is None  # indented code


def test_two_blocks_in_one_comment_are_left_to_the_agent() -> None:
    found = find_suggestion("```suggestion\na\n```\nor\n```suggestion\nb\n```")
    assert isinstance(found, Unapplicable) and "2 suggestion blocks" in str(found)


# -- where it goes -----------------------------------------------------------------------------


def position(**fields: object) -> CommentPosition:
    return msgspec.convert(fields, CommentPosition)


def test_a_multi_line_comment_is_placed_from_githubs_own_example() -> None:
    example = load_json("github-api/pulls-create-review-comment.multi-line.json")
    found = place_of(msgspec.convert(example, CommentPosition))
    assert found == Place("file1.txt", example["commit_id"], 1, 2)
    assert msgspec.convert(example, CommentPosition).user == Author("octocat", 1)


def test_a_comment_github_no_longer_places_uses_its_original_lines_and_commit() -> None:
    found = place_of(
        position(
            path="a.py", commit_id="new", original_commit_id="old", line=None,
            original_line=9, original_start_line=7, side="RIGHT",
        )
    )  # fmt: skip
    assert found == Place("a.py", "old", 7, 9)


def test_a_placed_comment_can_be_read_where_it_was_written() -> None:
    moved = position(
        path="a.py", commit_id="new", original_commit_id="old", line=12, start_line=11,
        original_line=9, original_start_line=8, side="RIGHT",
    )  # fmt: skip
    assert place_of(moved) == Place("a.py", "new", 11, 12)
    assert place_of(moved, original=True) == Place("a.py", "old", 8, 9)


def test_removed_lines_and_whole_file_comments_are_not_applied() -> None:
    left = position(path="a.py", commit_id="c", line=3, side="LEFT")
    from_left = position(path="a.py", commit_id="c", line=3, start_line=1, start_side="LEFT")
    whole = position(path="a.py", commit_id="c", subject_type="file")
    assert all(isinstance(place_of(p), Unapplicable) for p in (left, from_left, whole))


# -- applying it -------------------------------------------------------------------------------


def test_a_multi_line_range_becomes_the_blocks_lines() -> None:
    text = "a\nb\nc\nd\n"
    assert apply_suggestion(text, 2, 3, Suggestion(("B",))) == "a\nB\nd\n"
    assert apply_suggestion(text, 2, 2, Suggestion(("B1", "B2"))) == "a\nB1\nB2\nc\nd\n"


def test_an_empty_block_deletes_the_lines() -> None:
    assert apply_suggestion("a\nb\nc\n", 2, 3, Suggestion(())) == "a\n"


def test_a_crlf_file_keeps_crlf() -> None:
    text = "a\r\nb\r\nc\r\n"
    assert apply_suggestion(text, 2, 2, Suggestion(("x", "y"))) == "a\r\nx\r\ny\r\nc\r\n"


def test_the_last_line_without_a_newline_stays_without() -> None:
    assert apply_suggestion("a\nb", 2, 2, Suggestion(("x", "y"))) == "a\nx\ny"
    assert apply_suggestion("a\r\nb", 2, 2, Suggestion(("x", "y"))) == "a\r\nx\r\ny"
    assert apply_suggestion("a\nb", 2, 2, Suggestion(())) == "a"


def test_a_byte_order_mark_is_kept_and_not_counted_as_text() -> None:
    assert apply_suggestion("\ufeffa\nb\n", 1, 1, Suggestion(("x",))) == "\ufeffx\nb\n"
    assert lines_of("\ufeffa\nb\n", 1, 1) == ("a",)


def test_lines_outside_the_file_are_not_applied() -> None:
    try:
        apply_suggestion("a\n", 2, 2, Suggestion(("x",)))
    except Unapplicable as why:
        assert "1 lines" in str(why)
    else:
        raise AssertionError("applied outside the file")


# -- the commit --------------------------------------------------------------------------------


def test_the_commit_message_is_githubs_with_one_co_author_per_reviewer() -> None:
    ada, bob = Author("ada", 11), Author("bob", 22)
    planned = [
        Planned(1, "a.py", 1, 1, Suggestion(("x",)), ada, "ada"),
        Planned(2, "a.py", 3, 3, Suggestion(("y",)), bob, "bob"),
        Planned(3, "b.py", 1, 2, Suggestion(()), ada, "ada"),
    ]
    message = commit_message(7, planned)
    assert message.splitlines() == [
        "Apply suggestions from code review",
        "",
        "Co-authored-by: ada <11+ada@users.noreply.github.com>",
        "Co-authored-by: bob <22+bob@users.noreply.github.com>",
        "Biagent-Batch: 7",
        "Biagent-Suggestions: 1, 2, 3",
    ]
    assert applied_ids(message, 7) == (1, 2, 3) and applied_ids(message, 8) is None
    assert applied_ids("x\n\nBiagent-Batch: 7\nBiagent-Suggestions: 4, oops", 7) == (4,)
    assert co_author(None, "eve") == "Co-authored-by: eve <eve@users.noreply.github.com>"


# -- carrying the lines onto the head ----------------------------------------------------------


def test_lines_below_an_insertion_move_and_lines_inside_a_change_do_not_carry() -> None:
    inserted_above = [Hunk(0, 0, 1, 3)]
    assert carry_range(inserted_above, 5, 6) == (8, 9)
    changed_inside = [Hunk(6, 1, 6, 1)]
    assert carry_range(changed_inside, 5, 6) is None
    inserted_inside = [Hunk(5, 0, 6, 2)]
    assert carry_range(inserted_inside, 5, 6) is None
    inserted_after = [Hunk(6, 0, 7, 2)]
    assert carry_range(inserted_after, 5, 6) == (5, 6)
    removed_above = [Hunk(1, 2, 0, 0)]
    assert carry_range(removed_above, 5, 6) == (3, 4)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def test_hunks_of_a_real_git_diff_carry_the_range(tmp_path: Path) -> None:
    git("init", "-q", cwd=tmp_path)
    old = "".join(f"line {n}\n" for n in range(1, 21))
    new = "header\n" + old.replace("line 3\n", "").replace("line 15\n", "line fifteen\n")
    (tmp_path / "old.txt").write_text(old)
    (tmp_path / "new.txt").write_text(new)
    diff = subprocess.run(
        ["git", "diff", "--no-index", "--unified=0", "old.txt", "new.txt"],
        cwd=tmp_path, capture_output=True, text=True,
    ).stdout  # fmt: skip
    hunks = parse_hunks(diff)
    assert carry_range(hunks, 8, 10) == (8, 10)  # one line added above, one removed
    assert lines_of(new, 8, 10) == lines_of(old, 8, 10)
    assert carry_range(hunks, 14, 16) is None  # line 15 changed


# -- properties --------------------------------------------------------------------------------

LINES = st.lists(st.sampled_from(["a", "b", "", "  c", "d d", "é"]), min_size=1, max_size=12)


@st.composite
def files_and_ranges(draw: st.DrawFn) -> tuple[str, str, int, int]:
    lines = draw(LINES)
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    final = draw(st.booleans()) or lines[-1] == ""  # git has no empty unterminated line
    if len(lines) == 1 and not final:
        ending = "\n"  # a file without any line ending gets git's
    text = ending.join(lines) + (ending if final else "")
    first = draw(st.integers(1, len(lines)))
    last = draw(st.integers(first, len(lines)))
    return text, ending, first, last


@settings(max_examples=300)
@given(files_and_ranges())
def test_suggesting_the_lines_as_they_are_changes_nothing(
    case: tuple[str, str, int, int],
) -> None:
    text, _, first, last = case
    assert apply_suggestion(text, first, last, Suggestion(lines_of(text, first, last))) == text


def bodies(text: str, ending: str) -> list[str]:
    parts = text.split(ending)
    return parts[:-1] if parts[-1] == "" else parts


@settings(max_examples=300)
@given(files_and_ranges(), st.lists(st.sampled_from(["x", "", " y "]), max_size=4))
def test_the_block_replaces_exactly_the_range_in_the_files_line_endings(
    case: tuple[str, str, int, int], block: list[str]
) -> None:
    text, ending, first, last = case
    unterminated_end = not text.endswith(ending) and last == len(bodies(text, ending))
    assume(not (unterminated_end and block and block[-1] == ""))
    result = apply_suggestion(text, first, last, Suggestion(tuple(block)))
    old, new = bodies(text, ending), bodies(result, ending)
    assert new == old[: first - 1] + block + old[last:]
    if new and new[-1]:  # (an empty last line can only be written with its line ending)
        assert result.endswith(ending) == text.endswith(ending)
    other = "\n" if ending == "\r\n" else "\r\n"
    assert other not in result.replace(ending, "") and (ending != "\n" or "\r" not in result)


def difflib_hunks(old: list[str], new: list[str]) -> list[Hunk]:
    """The hunks a `--unified=0` diff would have for difflib's alignment (git's may differ:
    any valid alignment must do)."""
    hunks = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old_start = i1 if i2 == i1 else i1 + 1
        new_start = j1 if j2 == j1 else j1 + 1
        hunks.append(Hunk(old_start, i2 - i1, new_start, j2 - j1))
    return hunks


@settings(max_examples=400)
@given(LINES, LINES, st.data())
def test_a_carried_range_always_reads_as_it_did(
    old: list[str], new: list[str], data: st.DataObject
) -> None:
    first = data.draw(st.integers(1, len(old)))
    last = data.draw(st.integers(first, len(old)))
    carried = carry_range(difflib_hunks(old, new), first, last)
    if carried is not None:
        assert new[carried[0] - 1 : carried[1]] == old[first - 1 : last]


@settings(max_examples=300)
@given(LINES, LINES, LINES, st.integers(0, 3), st.integers(0, 3))
def test_lines_untouched_by_edits_around_them_are_found_where_they_moved(
    above: list[str], kept: list[str], below: list[str], removed: int, removed_below: int
) -> None:
    old = ["old"] * removed + above + kept + below + ["old"] * removed_below
    new = ["new", "new", *above, *kept, *below]
    hunks = [Hunk(1, removed, 1, 2) if removed else Hunk(0, 0, 1, 2)]
    if removed_below:
        start = len(old) - removed_below + 1
        hunks.append(Hunk(start, removed_below, len(new), 0))
    first = removed + len(above) + 1
    last = first + len(kept) - 1
    carried = carry_range(hunks, first, last)
    assert carried == (len(above) + 3, len(above) + 2 + len(kept))
    assert new[carried[0] - 1 : carried[1]] == old[first - 1 : last]


def committed(tmp_path: Path, text: str) -> Path:
    """A repository whose HEAD holds `text` as f.txt."""
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "f.txt").write_text(text)
    git("add", "f.txt", cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "f", cwd=tmp_path)
    return tmp_path


async def applied(tmp_path: Path, written_on: str, head: str, line: int, block: Suggestion) -> bool:
    place = Place("f.txt", "unused", line, line)
    return await already_applied(committed(tmp_path, head), place, written_on, head, block)


@pytest.mark.parametrize(
    ("head", "block", "expected"),
    [
        ("a\nB\nB2\nc\n", ("B", "B2"), True),
        ("top\na\nB\nB2\nc\nend\n", ("B", "B2"), True),
        ("a\nB\nc\n", ("B", "B2"), False),
        ("a\nX\nc\n", ("B", "B2"), False),
        ("a\nc\n", (), True),
        ("top\na\nc\n", (), False),  # a deletion is not told from lines never there: unsure
    ],
)
async def test_a_head_that_already_reads_as_suggested_is_recognised(
    tmp_path: Path, head: str, block: tuple[str, ...], expected: bool
) -> None:
    assert await applied(tmp_path, "a\nb\nc\n", head, 2, Suggestion(block)) is expected


async def test_a_big_repetitive_file_is_compared_by_git_while_the_event_loop_turns(
    tmp_path: Path,
) -> None:
    """20,000 near-identical lines, which took difflib 8-22 s on the event loop: git compares
    them in its own process while the loop keeps serving (it turns many times meanwhile)."""
    lines = [f"    x = {n % 3}\n" for n in range(20_000)]
    written_on = "".join(lines)
    head = "# moved down by one\n" + written_on.replace("    x = 1\n", "    x = one\n", 1)
    turns = 0
    comparing = True

    async def heartbeat() -> None:
        nonlocal turns
        while comparing:
            turns += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    try:
        found = await applied(tmp_path, written_on, head, 2, Suggestion(("    x = one",)))
    finally:
        comparing = False
        await beating
    assert found is True
    assert turns >= 20
