"""The costs layer: what a model costs on a board with an engine (``figures`` answers it, from
counts, liveness, arena, kernels and memplan)."""
