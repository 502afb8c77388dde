"""Revisions of the operational tables, oldest first (`0001_…`, `0002_…`)."""
