"""aiohttp: the app factory, REST API, webhook endpoints, WebSocket and the status page."""
