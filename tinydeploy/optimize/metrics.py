"""A stage's metrics as a typed record: what the pipeline measured of its int8 model, and what
the stage ran. ``to_dict`` gives the keys report.json and each stage's metrics.json have
always had; ``from_dict`` reads them back (a resumed run, the report's table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy.core.targets import TargetResult
from tinydeploy.optimize.engine_choice import EngineCost


@dataclass
class StageMetrics:
    """One stage's figures. Accuracy is the int8 model's on the TFLM interpreter; flash, arena
    and latency are the chosen engine's (None where no engine of the board runs the model)."""
    accuracy: float  # validation set
    engine: str  # the engine chosen for the model (engine_choice.choose), and why
    engine_why: str
    engines: list[EngineCost]  # its cost on every engine the board lists
    flash_bytes: int | None
    arena_bytes: int | None
    latency_ms: float | None
    latency_basis: str
    model_bytes: int  # the flatbuffer
    host_arena_bytes: int  # the TFLM arena measured on this host
    macs: int
    params: int
    targets: list[TargetResult]  # judged on the chosen engine, and accuracy when there is a minimum
    meets_targets: bool
    val_samples: int | None = None
    pooled_accuracy: float | None = None  # over every labelled sample, when validation is small
    pooled_samples: int | None = None
    loo_accuracy: float | None = None  # the nearest stage's leave-one-out 1-NN accuracy, when validation is small
    loo_samples: int | None = None
    # What the pipeline adds once the stage is done.
    stage: str = ""
    chain: list[str] = field(default_factory=list)  # the stages run up to this one
    arch: dict = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)  # layer -> bits, for layers below 8
    seconds: float = 0.0
    details: dict = field(default_factory=dict)  # what the stage did, its own keys
    history: list[dict] = field(default_factory=list)  # per epoch
    extra_histories: dict[str, list[dict]] = field(default_factory=dict)  # kept beside it: "fixed4" -> ...

    def figures(self) -> dict:
        """The measured figures under their report keys (the optional ones only when known)."""
        return {"accuracy": self.accuracy, **_known(val_samples=self.val_samples),
                **_known(pooled_accuracy=self.pooled_accuracy, pooled_samples=self.pooled_samples),
                "engine": self.engine, "engine_why": self.engine_why, "engines": [e.to_dict() for e in self.engines],
                "flash_bytes": self.flash_bytes, "arena_bytes": self.arena_bytes, "latency_ms": self.latency_ms,
                "latency_basis": self.latency_basis, "model_bytes": self.model_bytes,
                "host_arena_bytes": self.host_arena_bytes, "macs": self.macs, "params": self.params,
                "targets": [t.to_dict() for t in self.targets], "meets_targets": self.meets_targets,
                **_known(loo_accuracy=self.loo_accuracy, loo_samples=self.loo_samples)}

    def to_dict(self) -> dict:
        """The record under the keys of metrics.json and report.json's stages."""
        return {**self.figures(), "stage": self.stage, "chain": list(self.chain), "arch": self.arch,
                "bits": self.bits, "seconds": self.seconds, "details": self.details, "history": self.history,
                **{f"history_{name}": history for name, history in self.extra_histories.items()}}

    @classmethod
    def from_dict(cls, raw: dict) -> "StageMetrics":
        """The record of a dict from to_dict (a report's stages have no chain)."""
        known = {name: raw[name] for name in ("accuracy", "engine", "engine_why", "flash_bytes", "arena_bytes",
                                              "latency_ms", "latency_basis", "model_bytes", "host_arena_bytes",
                                              "macs", "params", "meets_targets", "stage", "arch", "bits",
                                              "seconds", "details")}
        optional = {name: raw.get(name) for name in ("val_samples", "pooled_accuracy", "pooled_samples",
                                                     "loo_accuracy", "loo_samples")}
        return cls(**known, **optional, engines=[EngineCost.from_dict(e) for e in raw["engines"]],
                   targets=[TargetResult.from_dict(t) for t in raw["targets"]], chain=list(raw.get("chain", [])),
                   history=raw.get("history", []),
                   extra_histories={key[len("history_"):]: value for key, value in raw.items()
                                    if key.startswith("history_")})


def _known(**figures) -> dict:
    """The figures that have a value (a report leaves out the ones a stage doesn't have)."""
    return {name: value for name, value in figures.items() if value is not None}
