"""Optimize: train a model and make its int8 form fit the board.

- ``pipeline``: the stages (arch, qat, mixed, progressive, prune, distill, seek, final), each
  measured on the TFLM interpreter and costed on every engine the board lists; ``optimize``.
- ``search``: hardware-aware architecture search (Optuna) within the budgets.
- ``engine_choice``: each engine's cost judged against the targets, and the choice.
- ``architectures``, ``quantization``, ``prune``, ``distill``, ``convert``: the models, the
  quantization-aware training, structured pruning, distillation and the int8 conversion.
"""

from tinydeploy.optimize.pipeline import (BUDGETS, STAGES, OptimizeConfig, OptimizeReport, Pipeline, check_stages,
                                          optimize)

__all__ = ["BUDGETS", "STAGES", "OptimizeConfig", "OptimizeReport", "Pipeline", "check_stages", "optimize"]
