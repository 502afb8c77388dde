"""security layer of dcihub (see docs/architecture.md)."""
