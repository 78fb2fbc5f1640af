"""What the set-up step builds (Go binaries, images, charts): one cache, one key scheme.

Each module has ``ensure_*()`` (build when missing; only the set-up step calls it) and a
function that returns the built thing or raises ``BuildMissingError``
(what servers and fixtures call).
"""
