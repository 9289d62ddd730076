"""Proof under faults: real processes killed, PostgreSQL and Redis stopped under load (PostgreSQL pass)."""
