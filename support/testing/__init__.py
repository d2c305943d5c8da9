"""Helpers for the test suite (imported by conftest.py and tests only)."""
