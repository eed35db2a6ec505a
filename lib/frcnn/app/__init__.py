"""Command-line applications: train, test, detect, demo."""
