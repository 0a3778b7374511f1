"""Fixtures for the browser suite: which browser, and a fresh one for each test."""

import pytest

from browsers import BROWSERS


@pytest.fixture(params=list(BROWSERS))
def browser_name(request) -> str:
    return request.param


@pytest.fixture
def browser(browser_name):
    with BROWSERS[browser_name]() as b:
        yield b
