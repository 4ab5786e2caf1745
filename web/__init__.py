"""HTTP and websocket front: aiohttp application factory, pages, JSON API, auth, translations, CLI."""
