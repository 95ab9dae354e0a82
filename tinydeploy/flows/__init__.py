"""Flows: jobs that run several stages in order (deploy: optimize, render, build, flash, bench, verify)."""
