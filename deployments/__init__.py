"""Thin Ray Serve adapters around the pure logic in ``serving``."""
