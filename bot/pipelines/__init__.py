"""Ticket pipelines (docs/pipelines.md): a JIRA ticket run through its cycle type's phases.

One module per job: `states` (the status enums), `detection` (which cycle type a ticket is),
`cycle_types` (checking an edit of one), `gates` (may the next phase start), and the engine
that drives the rows of storage/pipelines.py.
"""
