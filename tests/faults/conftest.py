"""Fixtures of the fault tests: a lab that cleans up after itself."""
import pytest_asyncio

from .lab import Lab


@pytest_asyncio.fixture
async def lab():
    """Processes, databases and temporary directories of one test, all gone afterwards."""
    opened = Lab()
    try:
        yield opened
    finally:
        await opened.close()
