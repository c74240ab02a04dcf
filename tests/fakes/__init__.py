"""Protocol fakes: small aiohttp apps on loopback that speak the HTTP APIs biagent uses."""
