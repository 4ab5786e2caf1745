"""The real-time heart: websocket hub, rooms, presence, waiting queue and pairing, the typed protocol.

No HTTP pages, no SQL strings (queries live in `db`).
"""
