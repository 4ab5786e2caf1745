"""Server-side WebRTC for Đồng Hành, built on aiortc.

The server stays out of the media path of ordinary calls (browsers talk peer
to peer). It terminates media only where it must see it:

- :mod:`media.echo` -- the connection-test peer of the patient's device check:
  echoes the camera and microphone back and measures RTT, loss and bitrate.
- :mod:`media.synthetic` -- synthetic sources, sinks and a client for load
  tests and benchmarks.
- :mod:`media.rtc` -- typed helpers around aiortc's configuration and session
  descriptions, shared by the modules above.
- :mod:`media.errors` -- :class:`~media.errors.MediaError`, the one exception
  family of this package.

Importing this package does not import aiortc; import the submodule you need.
"""
