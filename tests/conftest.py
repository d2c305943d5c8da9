"""Fixtures the cross-app tests borrow from the apps' own test bases."""

from channels_app.tests.conftest import post_fixture  # noqa: F401
