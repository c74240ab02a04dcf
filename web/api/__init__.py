"""REST API route tables, one module per resource, all behind the API token."""
