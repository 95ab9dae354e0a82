"""The one user-facing error family, mapped to exit codes in ``cli.main`` only.

Everything else that escapes is a bug and shows a traceback with ``--debug``.
"""

# Modules of the optional extras (pyproject.toml): a command that needs one that is not
# installed exits 2 naming the extra to install.
EXTRA_MODULES = {"tensorflow": "optimize", "tf_keras": "optimize", "tensorflow_model_optimization": "optimize",
                 "sklearn": "optimize", "scipy": "optimize", "optuna": "optimize", "psycopg": "optimize",
                 "matplotlib": "optimize",
                 "ppk2_api": "power", "joulescope": "power"}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class TinyDeployError(Exception):
    """An error the user can act on: bad input, a missed target, a failed step.

    Args:
        message: one line naming the problem and, where possible, the fix.
        exit_code: what the process exits with (1 failed/missed, 2 bad input).
    """

    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(TinyDeployError):
    """The user gave something unusable: a file, a name, an option value."""

    exit_code = EXIT_BAD_INPUT


class StepFailed(TinyDeployError):
    """A step that should have worked did not (a build, an upload, a port)."""

    exit_code = EXIT_FAILED


class TargetMissed(TinyDeployError):
    """The work was done, but a budget (arena, flash, latency, ...) was missed."""

    exit_code = EXIT_FAILED


def extra_missing(exc: ModuleNotFoundError) -> Exception:
    """A BadInput naming the extra to install, where exc is a missing module of one; else exc."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_MODULES.get(module)
    if extra is None:
        return exc
    return BadInput(f"this needs {module}, which the core install leaves out: pip install 'tinydeploy[{extra}]'")
