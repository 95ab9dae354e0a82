import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput
from tinydeploy.optimize.search import SearchConfig, open_study, redact, sample_arch, search
from tests.helpers import missing, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits16():
    return data.load("digits", image_size=16)


@pytest.fixture
def postgres_url():
    """A fresh database on the real PostgreSQL server that .ci/run starts on loopback."""
    base = os.environ.get("TINYDEPLOY_TEST_POSTGRES")
    if not base:
        missing("needs PostgreSQL: set TINYDEPLOY_TEST_POSTGRES (.ci/run starts a server and sets it)")
    import psycopg
    name = f"td_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")




def load(storage, study="tinydeploy"):
    import optuna
    return optuna.load_study(study_name=study, storage=storage)


def test_search_rejects_before_training_and_resumes(tmp_path, digits16):
    board = get_board("esp32-s3-devkitc-1")
    first = search(SearchConfig(digits16, tmp_path, board, trials=3, seed=1))
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    before = {t.number: t.params for t in load(storage).get_trials(deepcopy=False)}
    assert first["trials"] == 3 and len(before) == 3
    assert first["rejected_before_training"] + first["complete"] == 3
    second = search(SearchConfig(digits16, tmp_path, board, trials=1, seed=1))
    after = load(storage).get_trials(deepcopy=False)
    assert second["trials"] == 4
    assert {t.number: t.params for t in after if t.number in before} == before  # nothing redone
    for t in after:
        if t.user_attrs.get("rejected"):
            assert "accuracy" not in t.user_attrs  # rejected ones were never trained
        costs = t.user_attrs.get("costs")
        if costs:
            assert costs["flash_bytes"] > 0 and costs["arena_bytes"] >= costs["activation_lower_bound"]
            assert costs["energy_uj"] == pytest.approx(3.3 * 31.7 * costs["latency_ms"])  # the S3's active power
    assert all(p["energy_uj"] > 0 for p in second["pareto_front"])
    if second.get("best"):
        best = json.loads((tmp_path / "best_arch.json").read_text())
        assert best["flash_bytes"] <= 20 * 1024 and best["latency_ms"] <= 1 and best["arena_bytes"] <= 64 * 1024
    assert "Pareto front" in (tmp_path / "search.html").read_text()


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    common = ["search", "--data", "digits", "--image-size", "16", "--storage", postgres_url, "--study", "shared",
              "--trials", "2", "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "tinydeploy", *common, "--out", str(tmp_path / "a")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # the second worker joins once the study exists
        try:
            load(postgres_url, "shared")
            break
        except KeyError:
            time.sleep(0.5)
    second = subprocess.Popen([sys.executable, "-m", "tinydeploy", *common, "--join", "--out", str(tmp_path / "b")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for worker in (first, second):
        worker.wait(timeout=600)
        assert worker.returncode in (0, 1), worker.stderr.read()
    trials = load(postgres_url, "shared").get_trials(deepcopy=False)
    assert len(trials) == 4 and len({t.number for t in trials}) == 4  # distinct trials
    import optuna
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in finished for t in trials)  # every finished trial recorded
    assert all(t.user_attrs.get("costs") for t in trials)


def test_a_killed_worker_does_not_corrupt_the_study(tmp_path, postgres_url):
    import optuna
    worker = subprocess.Popen([sys.executable, "-m", "tinydeploy", "search", "--data", "digits", "--image-size", "16",
                               "--storage", postgres_url, "--study", "kill", "--trials", "20", "--quiet",
                               "--out", str(tmp_path / "a"), "--max-model-kb", "1000", "--max-latency-ms", "100", "--max-arena-kb", "4000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            try:
                running = [t for t in load(postgres_url, "kill").get_trials(deepcopy=False)
                           if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("costs")]
            except KeyError:
                running = []
            if running:
                break
            time.sleep(0.3)
        assert running, "the worker never started training a trial"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    code, out, err = run_cli("search", "--data", "digits", "--image-size", "16", "--storage", postgres_url,
                             "--study", "kill", "--join", "--trials", "1", "--out", tmp_path / "b", "--quiet",
                             "--max-model-kb", "1000", "--max-latency-ms", "100", "--max-arena-kb", "4000")
    assert code in (0, 1), err
    trials = load(postgres_url, "kill").get_trials(deepcopy=False)
    killed = next(t for t in trials if t.number == running[0].number)
    assert killed.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 1


def test_bad_input(tmp_path, digits16):
    code, _, err = run_cli("search", "--trials", "0", "--out", tmp_path)
    assert code == 2 and "argument --trials: 0 is out of range" in err
    code, _, err = run_cli("search", "--trials", "1", "--out", tmp_path,
                           "--storage", "postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    assert code == 2 and "postgresql://someone:***@127.0.0.1:1/nowhere" in err and "s3cret" not in err
    code, _, err = run_cli("search", "--data", "digits", "--image-size", "16", "--trials", "1", "--out",
                           tmp_path / "tiny", "--max-model-kb", "0.5")
    assert code == 2 and "no architecture in the search space can meet --max-model-kb 0.5 (the smallest needs" in err
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(storage, "s", digits16, 0, False)
    with pytest.raises(BadInput, match="study 's' .* was made for other data or another search space"):
        open_study(storage, "s", data.load("digits", image_size=12), 0, False)
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


@pytest.mark.parametrize("input_shape", [(16, 16, 1), (32, 3)])
def test_every_candidate_builds_quantizes_and_converts(input_shape):
    import optuna

    from tinydeploy.optimize import architectures as arch_lib
    from tinydeploy.optimize.quantization import quantize_for_training
    from tinydeploy.optimize.search import cost
    rng = np.random.default_rng(0)
    ds = data.from_arrays(rng.random((40, *input_shape), dtype=np.float32), np.arange(40) % 2, None, None, "random")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(3):
        trial = study.ask()
        arch = sample_arch(trial)
        quantize_for_training(arch_lib.with_softmax(arch_lib.plain_model(arch, input_shape, 2)), {})
        measured = cost(arch, ds, get_board("esp32dev"))
        assert measured.flash_bytes > 0 and measured.arena_bytes > 0
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_show_and_optimize_from_a_search(tmp_path):
    arch = {"arch": {"name": "s", "head_units": 0, "blocks": [
        {"kind": "conv", "filters": 8, "kernel": 3, "stride": 2, "activation": "relu", "pool": False, "residual": False},
        {"kind": "separable", "filters": 16, "kernel": 3, "stride": 1, "activation": "relu6", "pool": True,
         "residual": False}]}}
    (tmp_path / "best_arch.json").write_text(json.dumps(arch))
    code, out, err = run_cli("search", "--show", tmp_path / "best_arch.json", "--data", "digits", "--image-size", "16")
    assert code == 0 and "block 1: separable 16 filters 3x3" in out and "flash_bytes" in out
    code, out, err = run_cli("optimize", "--data", "digits", "--image-size", "16", "--search", tmp_path,
                             "--stages", "arch", "--budget", "fast", "--out", tmp_path / "opt", "--json")
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["stages"][0]["arch"]["blocks"][1]["filters"] == 16


def test_over_budget_candidates_are_scaled_to_fit_not_rejected(tmp_path):
    """On a long series and a slow board most sampled candidates are over budget; each is
    scaled down (width, then first stride) until it fits, and trained."""
    rng = np.random.default_rng(0)
    steps, n = 251, 36
    t = np.arange(steps)[None, :]
    at = rng.uniform(40, steps - 40, (n, 1))
    y = np.arange(n) % 3
    x = np.stack([np.exp(-0.5 * ((t - at) / 10) ** 2), (t > at).astype(float),
                  np.sin(t / 5.0) * (np.abs(t - at) < 20)])[y, np.arange(n)]
    series = data.from_arrays((x + rng.normal(0, 0.1, x.shape))[..., None].astype(np.float32), y, None, None, "long")
    summary = search(SearchConfig(series, tmp_path, get_board("esp32-c3-devkitm-1"), trials=2, seed=3,
                                  front_end="none"))  # the raw window's candidates are what this is about
    assert summary["rejection_rate"] < 0.25 and summary["complete"] == 2
    assert summary["scaled_to_fit"] >= 1
    trials = load(f"sqlite:///{tmp_path / 'search.db'}").get_trials(deepcopy=False)
    scaled = [t for t in trials if t.user_attrs.get("scaled")]
    assert all(t.user_attrs["costs"]["latency_ms"] <= 1.0 for t in scaled)
    assert all("scaled to width" in t.user_attrs["scaled"]["note"] for t in scaled)


def test_candidates_train_behind_the_front_end_and_optimize_search_takes_it(tmp_path):
    """search --front-end: every candidate trains on the front end's features under the budgets
    less its cost; best_arch.json records it, `optimize --search` runs it (a different pinned one
    is refused) and `search --show` costs the architecture on its features."""
    from tinydeploy import api
    from tests.test_frontend_optimize import long_windows
    x, y = long_windows(60, 512, 3)
    np.savez(tmp_path / "tones.npz", x_train=x, y_train=y)
    spec = "spectrum:frame=64,hop=128,bands=16,relative=true,pool=true"
    out = tmp_path / "search"
    summary = api.search(str(tmp_path / "tones.npz"), out, trials=1, front_end=spec)
    front = summary["front_end"]
    assert front["spec"] == spec and front["how"] == "pinned"
    assert 0 < front["network_targets"]["max_latency_ms"] < 1.0  # the budget less the front end's cost
    trials = load(f"sqlite:///{out / 'search.db'}").get_trials(deepcopy=False)
    assert any(t.user_attrs.get("accuracy") is not None for t in trials)
    best = json.loads((out / "best_arch.json").read_text())
    assert best["front_end"] == spec
    assert api.searched_front_end(out, "auto") == spec and api.searched_front_end(out, spec) == spec
    same = "spectrum:64,hop=128,bands=16,pool=true,relative=true"  # written another way
    assert api.searched_front_end(out, same) == same
    with pytest.raises(BadInput, match="differs from the front end the search"):
        api.searched_front_end(out, "none")
    (tmp_path / "raw.json").write_text(json.dumps(best["arch"]))  # the same architecture, no front end
    _, shown = api.arch_cost(out / "best_arch.json", str(tmp_path / "tones.npz"))
    _, raw = api.arch_cost(tmp_path / "raw.json", str(tmp_path / "tones.npz"))
    assert shown.macs < raw.macs  # 1 x 16 features against 512 raw steps
    from tinydeploy.display import search_lines
    assert search_lines(summary, out)[0].startswith(f"front end (pinned): {spec}; the network's budgets: ")


def test_widest_fitting_width_is_found_by_bisection():
    from tinydeploy.optimize.fit import widest_fitting
    asked = []

    def fits(width):
        asked.append(width)
        return width <= 0.3
    width = widest_fitting(fits, 0.125, 5)
    assert 0.25 < width <= 0.3 and len(asked) == 5
    assert widest_fitting(lambda w: True, 0.125, 5) > 0.9  # everything fits: nearly the full width
