"""Review discover clusters in the FiftyOne App and sync human corrections back into the run's labels.csv."""
