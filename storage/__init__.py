"""The database layer: migrations and one module of plain SQL per aggregate.

It knows nothing of GitHub, JIRA or HTTP (docs/design.md, Layers). Every module here takes a
`Database` and returns frozen dataclasses, never rows.
"""
