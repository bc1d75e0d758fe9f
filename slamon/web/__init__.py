"""HTTP: the server (one aiohttp app), the JSON API and the public status page."""
