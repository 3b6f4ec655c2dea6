"""Where a study's results live: the results table, the study directory, the study's home."""
