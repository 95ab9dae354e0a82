"""The core layer: data types, board profiles, targets, data sets and errors, with no side effects beyond reading files."""
