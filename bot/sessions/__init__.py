"""Browser sessions: open tabs, UI state, offline events and restore (docs/sessions.md)."""
