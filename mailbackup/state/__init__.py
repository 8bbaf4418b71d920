"""The archive's SQLite state and its lock."""
