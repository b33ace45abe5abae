"""`make run` (`facility-run`): the whole system on one machine, supervised."""
