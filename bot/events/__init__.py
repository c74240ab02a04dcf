"""The event bus and the catalogue of every message type it carries (docs/design.md, Events)."""
