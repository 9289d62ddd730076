"""The in-store POS channel: its payloads and how they become core orders."""
