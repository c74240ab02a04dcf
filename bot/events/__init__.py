"""The event bus and the catalogue of every message type it carries (DESIGN.md, Events)."""
