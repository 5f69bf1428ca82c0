"""Golden summaries of the bundled scenarios."""
