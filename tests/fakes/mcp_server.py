"""A small MCP server for the bridge's tests, run over stdio: `python -m tests.fakes.mcp_server`.

It stands for a documentation service (the Notion integration goes through the same bridge):
`search_pages` finds pages by a word, `read_page` returns a page or fails with a tool error.
NOTES_PREFIX in its environment shows that the bridge passes the configured env through.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

PAGES = {
    "Greeting policy": "Say 'hi' in the product, never 'hello'.",
    "Release process": "Tag, build, publish.",
}

server = MCPServer("notes")


@server.tool()
def search_pages(word: str) -> str:
    """Titles of the pages that mention a word."""
    prefix = os.environ.get("NOTES_PREFIX", "")
    found = [title for title, text in PAGES.items() if word.lower() in (title + text).lower()]
    return prefix + ("\n".join(found) or "nothing found")


@server.tool()
def read_page(title: str) -> str:
    """The text of one page."""
    if title not in PAGES:
        raise ToolError(f"no page titled {title!r}")
    return PAGES[title]


if __name__ == "__main__":
    server.run("stdio")
