"""The costs layer: what a model costs on a board (counts, arena, kernel scratch, memory plans, latency)."""
