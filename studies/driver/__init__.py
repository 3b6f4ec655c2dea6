"""Running a study on Ray: the Study, the trial function, budgets, trackers, interrupts, the console."""
