"""Review threads: which diff comment a reply belongs under (pure).

GitHub threads diff comments by `in_reply_to_id`, always naming the thread's first comment; a
thread whose root biagent never stored (older than its watch) is named by that id all the same.
"""

from __future__ import annotations

from storage.review_comments import Comment


def thread_root(comment: Comment, by_id: dict[int, Comment]) -> int:
    """The id of the first comment of `comment`'s thread (a cycle stops where it repeats)."""
    root, seen = comment, {comment.id}
    while root.in_reply_to_id is not None and root.in_reply_to_id not in seen:
        seen.add(root.in_reply_to_id)
        parent = by_id.get(root.in_reply_to_id)
        if parent is None:
            return root.in_reply_to_id
        root = parent
    return root.id
