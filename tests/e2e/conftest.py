"""Fixtures of the POS tests."""
import pytest

from .programs import POS_PROGRAM


@pytest.fixture
async def till(chain):
    """The test chain under the POS test program; modules set the clock they need."""
    await chain.set_program(POS_PROGRAM)
    return chain
