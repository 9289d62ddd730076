"""Fixtures of the POS tests."""
import pytest

from .programs import PROGRAM


@pytest.fixture
async def till(chain):
    """The test chain under the POS test program; modules set the clock they need."""
    await chain.set_program(PROGRAM)
    return chain
