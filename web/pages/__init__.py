"""The status pages: the dashboard's read model and one route module per page (issue 11)."""
