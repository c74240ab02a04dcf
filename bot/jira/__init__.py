"""JIRA: the client, the mirror's sync, its webhook concern, its schedule and the CLI."""
