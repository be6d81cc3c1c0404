"""Shared fixtures of the end-to-end tests."""

import socket

import pytest


@pytest.fixture(scope="module")
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for an app under test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
