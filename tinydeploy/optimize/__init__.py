"""Optimize: train a model and make its int8 form fit the board.

- ``pipeline``: ``optimize``: runs the stages in order, resuming finished ones, and chooses among them.
- ``stages``: the stages (arch, qat, mixed, progressive, prune, distill, seek, nearest), a class
  each in one registry; ``training``: what they share (training, QAT, int8 conversion, measuring);
  ``metrics``: a stage's metrics record, measured on the TFLM interpreter and costed on every
  engine the board lists.
- ``fit``: shrink to fit: the largest model of a family within the budgets (seek and search).
- ``search``: hardware-aware architecture search (Optuna) within the budgets.
- ``engine_choice``: each engine's cost judged against the targets, and the choice.
- ``architectures``, ``quantization``, ``prune``, ``distill``, ``convert``: the models, the
  quantization-aware training, structured pruning, distillation and the int8 conversion.
"""

from tinydeploy.optimize.pipeline import BUDGETS, STAGES, OptimizeConfig, OptimizeReport, check_stages, optimize

__all__ = ["BUDGETS", "STAGES", "OptimizeConfig", "OptimizeReport", "check_stages", "optimize"]
