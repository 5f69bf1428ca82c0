"""Per-request records, time-weighted levels, histograms and run summaries."""
