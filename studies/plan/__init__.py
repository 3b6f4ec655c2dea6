"""What a study is: its validated config, the search spaces, what a trial is given (no Ray)."""
