"""Tests of ``tether.wire``: codec, state machine, sans-IO connection, and the real server."""
