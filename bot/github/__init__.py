"""The GitHub App: identity, installation tokens, API clients and installation webhooks."""
