"""Load figures for the gateway: ``python -m bench``. Figures to compare, never pass/fail."""
