"""Yardsticks: what a trivial classifier scores on the same windows as the deployed model, and
the default accuracy checks judged against them.

The yardstick every report carries is 1-nearest-neighbour with Euclidean distance on the raw
windows, in float (numpy): the baseline users of public time-series sets compare with. It
is computed, shown beside the deployed int8 model's accuracy, and never deployed. MiniRocket,
a strong float reference for series, is added when the optional package aeon is installed.

Without --min-accuracy the chosen model must pass two checks (default_checks): the 95%
Wilson interval of its held-out accuracy must lie above chance (the larger of 1/classes and
the most common class's share of the scored windows), and must not lie wholly below the 95%
interval of the 1-NN yardstick's accuracy on the same windows (clearly worse than 1-NN; on
digits, 0.861 of 360 against 1-NN's 0.986 is, the nearest stage's 0.961 is not). An explicit
--min-accuracy replaces both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tinydeploy.core.targets import TargetResult
from tinydeploy.runtime.evaluate import wilson_interval

# Distances are computed a block of query windows at a time: a block x references matrix of
# float64 stays near this many bytes (5,000 references of 2,000 steps: 5 MB a block).
BLOCK_BYTES = 1 << 23
# MiniRocket's smallest dilated kernel spans 9 steps; shorter series are not computed.
MINIROCKET_MIN_STEPS = 9
MINIROCKET_PACKAGE = "aeon"


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def nearest_labels(reference: np.ndarray, labels: np.ndarray, queries: np.ndarray,
                   leave_out_self: bool = False) -> np.ndarray:
    """The label of each query's nearest reference window (squared Euclidean distance on the
    raw values; the first of equally near ones).

    Args:
        reference: windows (N, ...) with their labels (N,).
        labels: the reference windows' labels.
        queries: windows (M, ...) of the same shape.
        leave_out_self: queries are the reference windows themselves (M == N): each is
            labelled by its nearest *other* window (leave-one-out).

    Returns:
        (M,) labels.
    """
    r, q = _flat(reference), _flat(queries)
    r_squared = (r * r).sum(axis=1)
    block = max(1, BLOCK_BYTES // (8 * max(1, len(r))))
    out = np.empty(len(q), dtype=np.asarray(labels).dtype)
    for start in range(0, len(q), block):
        part = q[start:start + block]
        d = (part * part).sum(axis=1)[:, None] - 2 * part @ r.T + r_squared[None, :]
        if leave_out_self:
            rows = np.arange(len(part))
            d[rows, start + rows] = np.inf
        out[start:start + len(part)] = labels[d.argmin(axis=1)]
    return out


def one_nn_accuracy(reference: np.ndarray, labels: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                    leave_out_self: bool = False) -> float:
    """1-NN Euclidean accuracy of the reference windows on labelled queries (nearest_labels)."""
    return float((nearest_labels(reference, labels, queries, leave_out_self) == truth).mean())


@dataclass(frozen=True)
class Yardstick:
    """One reference classifier scored on one set of held-out windows, beside the deployed model."""
    name: str  # "1-NN Euclidean (raw windows, float)"
    on: str  # "validation", "test", "leave-one-out"
    samples: int
    reference: str  # what it was fitted on
    accuracy: float | None  # None: not computed (note says why)
    deployed_accuracy: float | None  # the deployed int8 model's on the same windows
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Deployed accuracy over the yardstick's."""
        if self.accuracy is None or self.deployed_accuracy is None or self.accuracy == 0:
            return None
        return round(self.deployed_accuracy / self.accuracy, 4)

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


ONE_NN = "1-NN Euclidean (raw windows, float)"
MINIROCKET = "MiniRocket (float)"


def one_nn(x_ref, y_ref, x, y, on: str, reference: str, deployed: float | None,
           leave_out_self: bool = False) -> Yardstick:
    """The 1-NN yardstick on windows x (labels y), from the reference windows."""
    accuracy = one_nn_accuracy(x_ref, y_ref, x, y, leave_out_self)
    return Yardstick(ONE_NN, on, int(len(x)), reference, round(accuracy, 5),
                     None if deployed is None else round(deployed, 5))


def minirocket(x_ref, y_ref, x, y, on: str, reference: str, deployed: float | None, kind: str,
               seed: int = 0) -> Yardstick:
    """MiniRocket (aeon's MiniRocketClassifier) fitted on the reference windows and scored on x,
    or a row saying why it was not computed (aeon not installed, not a series, too short)."""
    def skipped(why: str) -> Yardstick:
        return Yardstick(MINIROCKET, on, int(len(x)), reference, None,
                         None if deployed is None else round(deployed, 5), f"not computed: {why}")
    if kind != "series":
        return skipped("MiniRocket is for time series, these are images")
    if x.shape[1] < MINIROCKET_MIN_STEPS:
        return skipped(f"windows of {x.shape[1]} steps, MiniRocket needs at least {MINIROCKET_MIN_STEPS}")
    try:
        from aeon.classification.convolution_based import MiniRocketClassifier
    except ImportError:
        return skipped(f"install {MINIROCKET_PACKAGE} (pip install {MINIROCKET_PACKAGE}) to add this reference")
    classifier = MiniRocketClassifier(random_state=seed)
    classifier.fit(np.transpose(np.asarray(x_ref, np.float64), (0, 2, 1)), np.asarray(y_ref))  # aeon: (n, channels, steps)
    predicted = classifier.predict(np.transpose(np.asarray(x, np.float64), (0, 2, 1)))
    return Yardstick(MINIROCKET, on, int(len(x)), reference, round(float((predicted == y).mean()), 5),
                     None if deployed is None else round(deployed, 5))


def chance_rate(y: np.ndarray, n_classes: int) -> float:
    """What guessing scores on windows labelled y: the larger of 1/classes and the most common
    class's share (always answering that class)."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=n_classes)
    return max(1.0 / n_classes, float(counts.max()) / max(1, len(y)))


def default_checks(accuracy: float, samples: int, chance: float, one_nn_accuracy: float | None,
                   figure: str) -> list[TargetResult]:
    """The accuracy checks that stand when no --min-accuracy is given (module docstring).

    Args:
        accuracy: the chosen model's held-out accuracy (what it was ranked on, or test).
        samples: how many windows that accuracy is over.
        chance: chance_rate of those windows.
        one_nn_accuracy: the 1-NN yardstick on the same windows (None: not judged).
        figure: what the accuracy is, in words ("int8 validation accuracy").

    Returns:
        "accuracy vs chance" and "accuracy vs 1-NN" verdicts.
    """
    low, high = wilson_interval(round(accuracy * samples), samples)
    interval = f"{figure} {accuracy:.3f} over {samples} windows (95% interval {low:.3f}-{high:.3f})"
    # met when the interval's low end clears chance: measured is that low end, limit is chance
    vs_chance = TargetResult(
        "accuracy vs chance", round(low, 5), round(chance, 5), "", "default check (no --min-accuracy)", at_least=True,
        detail=(f"{interval} {'is above' if low > chance else 'includes'} chance {chance:.3f}"))
    checks = [vs_chance]
    if one_nn_accuracy is not None:
        # Met unless the two 95% intervals (same windows, same count) don't overlap: the model is
        # then clearly worse, where closer figures are more than the windows can tell apart.
        nn_low, nn_high = wilson_interval(round(one_nn_accuracy * samples), samples)
        clearly_worse = high < nn_low
        checks.append(TargetResult(
            "accuracy vs 1-NN", round(high, 5), round(nn_low, 5), "", "default check (no --min-accuracy)",
            at_least=True, detail=(f"{interval} {'lies wholly below' if clearly_worse else 'overlaps'} the 95% "
                                   f"interval of the 1-NN Euclidean yardstick's {one_nn_accuracy:.3f} on the same "
                                   f"windows ({nn_low:.3f}-{nn_high:.3f})")))
    return checks


def what_would_help(details: dict, train_samples: int, held_out: int, kind: str, front_end: str = "auto",
                    has_front_end: bool = False) -> str:
    """What could lift accuracy, chosen from what the run shows (front_end: how the run's front end
    was decided, "auto", "pinned" or "disabled"; has_front_end: whether it has one)."""
    from tinydeploy.optimize.training import AUGMENT_BELOW, SMALL_VALIDATION
    helps = []
    seek = details.get("seek") or {}
    if seek.get("needed"):
        helps.append(f"a longer latency budget (--max-latency-ms) or a faster board: seek shrank the model "
                     f"to width {seek.get('width', '?')} to meet the targets")
    if train_samples < AUGMENT_BELOW or held_out < SMALL_VALIDATION:
        helps.append(f"more data ({train_samples} training and {held_out} held-out windows)")
    if kind == "series" and front_end == "disabled":
        helps.append("a signal front end (--front-end auto, or pin one; docs/frontend.md)")
    elif kind == "series" and front_end == "pinned":
        helps.append("another signal front end (--front-end auto compares several; docs/frontend.md)")
    elif kind == "series" and not has_front_end:
        helps.append("a signal front end: none fitted half the budgets or beat the raw window; a longer latency "
                     "budget lets the spectral ones in (--front-end SPEC pins one; docs/frontend.md)")
    helps.append("a longer --budget")
    return "what would help: " + "; ".join(helps)


@dataclass(frozen=True)
class Judged:
    """The held-out figure the default checks judge, with the 1-NN yardstick on the same windows."""
    figure: str  # in words
    accuracy: float
    samples: int
    chance: float
    one_nn: float


def yardsticks(data, n_classes: int, validation: float, test: float | None, loo: tuple[float, int] | None,
               seed: int = 0) -> tuple[list[Yardstick], Judged]:
    """Every yardstick row of a report, and the figure the default checks judge: test when
    there is a test set, else the held-out figure the chosen model was ranked on (pipeline._rank).

    Args:
        data: the run's Dataset.
        n_classes: how many classes.
        validation: the chosen model's int8 validation accuracy.
        test: its int8 test accuracy, or None (no test set).
        loo: (accuracy, samples) when it was ranked on leave-one-out over every labelled window.
        seed: MiniRocket's.

    Returns:
        (the rows, the judged figure).
    """
    x_all = np.concatenate([data.x_train, data.x_val])
    y_all = np.concatenate([data.y_train, data.y_val])
    train_ref = f"the {len(data.x_train)} training windows"
    all_ref = f"the {len(x_all)} training and validation windows"
    rows = [one_nn(data.x_train, data.y_train, data.x_val, data.y_val, "validation", train_ref, validation)]
    judged = Judged("int8 validation accuracy", validation, len(data.x_val), chance_rate(data.y_val, n_classes),
                    rows[0].accuracy)
    rocket = [(data.x_train, data.y_train, data.x_val, data.y_val, "validation", train_ref, validation)]
    if loo is not None:
        rows.append(one_nn(x_all, y_all, x_all, y_all, "leave-one-out", all_ref + ", each but itself", loo[0],
                           leave_out_self=True))
        judged = Judged("leave-one-out accuracy it was ranked on", loo[0], loo[1], chance_rate(y_all, n_classes),
                        rows[-1].accuracy)
    if test is not None:
        rows.append(one_nn(x_all, y_all, data.x_test, data.y_test, "test", all_ref, test))
        judged = Judged("int8 test accuracy", test, len(data.x_test), chance_rate(data.y_test, n_classes),
                        rows[-1].accuracy)
        rocket.append((x_all, y_all, data.x_test, data.y_test, "test", all_ref, test))
    for args in rocket[::-1]:  # the judged set first: without aeon, one row says why
        row = minirocket(*args, kind=data.kind, seed=seed)
        rows.append(row)
        if row.accuracy is None:
            break
    return rows, judged
