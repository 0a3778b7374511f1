"""Fixtures for the browser suite: which browser, and a fresh one for each test.

Chromium starts in about a second: each test gets its own process (and so its own net-log).
Firefox takes several: one process serves the whole session, and each test gets a tab in a
user context of its own, which has its own connections, as a fresh browser would."""

import pytest

from browsers import BROWSERS, Chromium, Firefox


@pytest.fixture(params=list(BROWSERS))
def browser_name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def firefox():
    with Firefox() as fx:
        yield fx


@pytest.fixture
def browser(browser_name, request):
    if browser_name == "chromium":
        with Chromium() as b:
            yield b
    else:
        with request.getfixturevalue("firefox").tab() as tab:
            yield tab
