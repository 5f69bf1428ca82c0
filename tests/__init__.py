"""capsim test suite."""
