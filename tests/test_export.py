"""`tinydeploy export`: the model as a library in the user's own program.

The C engine's libraries are compiled here with gcc (-Wall -Wextra -Werror) and called
through ctypes or linked into small programs; their answers are compared with TFLM on the
host (what `tinydeploy evaluate` runs) on every test window of three tiny models: the
digits demo (no labels in it), a time-series model with labels, and a time-series model
with a signal front end. The TFLM engine's export is compiled against an esp-tflite-micro
tree with the host shim where TINYDEPLOY_TFLM_SRC names one (skipped otherwise)."""

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import api
from tinydeploy.codegen.library import ExportOptions, c_name, export
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import load_model, with_metadata
from tinydeploy.runtime.evaluate import quantize_input
from tinydeploy.runtime.tflm import TflmRunner
from tests.helpers import missing, need_programs

ROOT = Path(__file__).resolve().parents[1]
STRICT = ["-Wall", "-Wextra", "-Werror"]
STEPS, CHANNELS = 40, 3
SERIES_LABELS = ["slow", "mid", "fast"]


# ---- models (tiny, trained here) ----

def _series(n: int, seed: int):
    """Three classes of noisy sines of three frequencies, on three channels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(STEPS)[None, :, None]
    x = 2.0 * np.sin(2 * np.pi * (y + 1)[:, None, None] * 0.08 * t + rng.random((n, 1, CHANNELS)) * 6)
    return (x + rng.normal(0, 0.3, (n, STEPS, CHANNELS))).astype(np.float32), y


def _fit(model, x, y, epochs: int):
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (model path, test windows as the library takes them, the model's int8 inputs
    for those windows as the host computes them)}."""
    from tinydeploy.core import data
    from tinydeploy.core.frontend import Frontend, Stats, input_scale_for
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    keras = _tf.keras()
    layers = keras.layers
    folder = tmp_path_factory.mktemp("export-models")
    out = {}

    keras.utils.set_random_seed(0)
    digits = data.digits(12)
    cnn = _fit(keras.Sequential([layers.Input((12, 12, 1)), layers.Conv2D(4, 3, activation="relu"),
                                 layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10, activation="softmax")]),
               digits.x_train, digits.y_train, 3)
    path = folder / "digits.tflite"
    path.write_bytes(to_int8_tflite(cnn, digits.x_train[:64]))  # no metadata: no labels
    model = load_model(path)
    out["digits"] = (path, digits.x_val.reshape(len(digits.x_val), -1), quantize_input(model, digits.x_val))

    x, y = _series(240, 1)
    x_test, _ = _series(60, 2)
    series = _fit(keras.Sequential([layers.Input((STEPS, CHANNELS)), layers.Conv1D(8, 5, strides=2, activation="relu"),
                                    layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")]), x, y, 8)
    path = folder / "series.tflite"
    path.write_bytes(with_metadata(to_int8_tflite(series, x[:64]), {"labels": SERIES_LABELS}))
    model = load_model(path)
    out["series"] = (path, x_test.reshape(len(x_test), -1), quantize_input(model, x_test))

    frontend = Frontend(blocks=(Stats(stats=("mean", "std", "min", "max"), segments=2),), input_scale=input_scale_for(x))
    features = frontend.features(x)
    head = _fit(keras.Sequential([layers.Input(features.shape[1:]), layers.Flatten(),
                                  layers.Dense(3, activation="softmax")]), features, y, 30)
    path = folder / "frontend.tflite"
    meta = {"labels": SERIES_LABELS, "frontend": frontend.to_dict(), "window": [STEPS, CHANNELS]}
    path.write_bytes(with_metadata(to_int8_tflite(head, features[:64]), meta))
    model = load_model(path)
    q = model.input_tensors[0].quantization
    inputs = frontend.with_output(q.scales[0], q.zero_points[0]).quantized(x_test)
    out["frontend"] = (path, x_test.reshape(len(x_test), -1), inputs.reshape(len(x_test), -1))
    return out


def _tflm_outputs(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    model = load_model(model_path)
    runner = TflmRunner(model)
    try:
        return runner.predict_int8(inputs.reshape(len(inputs), *model.input_tensors[0].shape[1:]))
    finally:
        runner.close()


# ---- the library through ctypes ----

def _export(model_path: Path, out: Path, name: str, kind: str = "c-library", **options) -> dict:
    return api.export(model_path, kind, out, name=name, **options)


OPT = "-O1"  # the tests' builds: warnings need an optimizer's analysis; -O2 takes twice as long


def _compile_shared(folder: Path) -> Path:
    need_programs("gcc")
    library = folder / "library.so"
    command = ["gcc", "-std=c99", OPT, *STRICT, "-shared", "-fPIC", f"-I{folder / 'include'}", f"-I{folder / 'src'}",
               *map(str, sorted((folder / "src").glob("*.c"))), "-o", str(library)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return library


class Library:
    """An exported C library compiled into a shared object, called through its header's API."""

    def __init__(self, folder: Path, name: str, classes: int):
        self.lib = ctypes.CDLL(str(_compile_shared(folder)))
        self.name = name
        self.classes = classes

        class Result(ctypes.Structure):
            _fields_ = [("index", ctypes.c_int), ("label", ctypes.c_char_p), ("time_us", ctypes.c_uint32),
                        ("frontend_us", ctypes.c_uint32), ("scores", ctypes.c_float * classes)]
        self.Result = Result
        self.fn("error_text").restype = ctypes.c_char_p
        self.fn("stream_size").restype = ctypes.c_size_t

    def fn(self, suffix: str):
        return getattr(self.lib, f"{self.name}_{suffix}")

    def setup(self) -> int:
        return self.fn("setup")()

    def classify(self, window, length: int | None = None):
        x = np.ascontiguousarray(window, np.float32)
        result = self.Result()
        code = self.fn("classify")(x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(x.size if length is None else length),
                                   ctypes.byref(result))
        return code, result

    def classify_int8(self, values):
        x = np.ascontiguousarray(values, np.int8)
        result = self.Result()
        return self.fn("classify_int8")(x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(x.size),
                                        ctypes.byref(result)), result

    def quantize(self, window, size: int) -> np.ndarray:
        x = np.ascontiguousarray(window, np.float32)
        out = np.zeros(size, np.int8)
        assert self.fn("quantize")(x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(x.size),
                                   out.ctypes.data_as(ctypes.c_void_p)) == 0
        return out

    def stream(self, hop: int, smoothing: int):
        state = ctypes.create_string_buffer(self.fn("stream_size")())
        return state, self.fn("stream_init")(state, ctypes.c_uint32(hop), ctypes.c_uint32(smoothing))

    def push(self, state, sample, channels: int | None = None):
        x = np.ascontiguousarray(sample, np.float32)
        result = self.Result()
        code = self.fn("stream_push")(state, x.ctypes.data_as(ctypes.c_void_p),
                                      ctypes.c_size_t(x.size if channels is None else channels), ctypes.byref(result))
        return code, result

    def error_text(self, code: int) -> str:
        return self.fn("error_text")(code).decode()


@pytest.fixture(scope="module")
def libraries(models, tmp_path_factory):
    """Each model's C library (exported with its defaults, under its own name), compiled once."""
    cache = {}

    def get(which: str):
        if which not in cache:
            folder = tmp_path_factory.mktemp(f"lib-{which}")
            summary = _export(models[which][0], folder, which)
            cache[which] = (Library(folder, which, len(summary["labels"])), summary, folder)
        return cache[which]
    return get


def _scale(model_path: Path) -> float:
    return load_model(model_path).output_tensors[0].quantization.scales[0]


@pytest.mark.host
@pytest.mark.parametrize("which", ["digits", "series", "frontend"])
def test_the_float_api_gives_tflms_answers_on_every_test_window(models, libraries, which):
    """The C library's classify() on raw floats: the label TFLM gives on the host for every
    test window, every score within one quantization step of TFLM's, and the int8 input it
    makes is the host's (quantize_input, or the front end's quantized())."""
    model_path, windows, inputs = models[which]
    lib, summary, _ = libraries(which)
    assert lib.setup() == 0
    reference = _tflm_outputs(model_path, inputs)
    scale, zero = _scale(model_path), load_model(model_path).output_tensors[0].quantization.zero_points[0]
    same_label = within_step = same_input = 0
    for window, x_int8, expected in zip(windows, inputs, reference):
        code, result = lib.classify(window)
        assert code == 0, lib.error_text(code)
        same_input += np.array_equal(lib.quantize(window, x_int8.size), x_int8.reshape(-1))
        same_label += result.index == int(np.argmax(expected))
        tflm_scores = (expected.astype(np.float32) - zero) * scale
        within_step += bool(np.all(np.abs(np.array(result.scores) - tflm_scores) <= scale * 1.001))
        assert result.label.decode() == summary["labels"][result.index]
        code8, result8 = lib.classify_int8(x_int8)
        assert code8 == 0 and list(result8.scores) == list(result.scores) and result8.frontend_us == 0
    print(f"{which}: {same_label}/{len(windows)} labels as TFLM, {within_step} within one step, "
          f"{same_input} identical int8 inputs")
    assert same_label == within_step == same_input == len(windows)


@pytest.mark.host
@pytest.mark.parametrize("which,hop,smoothing", [("series", 7, 1), ("frontend", 0, 3), ("series", 50, 2)])
def test_streaming_sample_by_sample_equals_whole_windows(models, libraries, which, hop, smoothing):
    """stream_push fed one sample at a time classifies the windows that start every hop samples
    (hop 0: the export's default, the window) with classify()'s results, averaged over the
    last `smoothing` ones."""
    model_path, windows, _ = models[which]
    lib, summary, _ = libraries(which)
    assert lib.setup() == 0 and summary["hop"] == STEPS
    signal = windows[:5].reshape(-1, CHANNELS)  # 200 samples of 3 channels
    state, code = lib.stream(hop, smoothing)
    hop = hop or STEPS
    assert code == 0
    streamed = []
    for i, sample in enumerate(signal):
        code, result = lib.push(state, sample)
        assert code in (0, 1)
        if code == 1:
            streamed.append((i, result.index, np.array(result.scores)))
    starts = range(0, len(signal) - STEPS + 1, hop)
    assert [i for i, _, _ in streamed] == [s + STEPS - 1 for s in starts]
    history = []
    for (_, index, scores), start in zip(streamed, starts):
        code, whole = lib.classify(signal[start:start + STEPS].reshape(-1))
        history.append(np.array(whole.scores))
        expected = np.mean(history[-smoothing:], axis=0, dtype=np.float32)
        assert np.allclose(scores, expected, atol=1e-6) and index == int(np.argmax(expected))


@pytest.mark.host
def test_two_exported_models_link_into_one_cpp_program(models, libraries, tmp_path):
    """Two libraries, each with its own kernels, runner and model, compiled separately and
    linked into one C++ program: every global symbol carries its library's prefix, and both
    models give the answers each gives alone."""
    need_programs("gcc", "g++", "nm")
    series_path, series_windows, _ = models["series"]
    digits_path, digits_windows, _ = models["digits"]
    objects = []
    for name, path in (("wake", series_path), ("digits", digits_path)):
        folder = tmp_path / name
        _export(path, folder, name)
        for source in sorted((folder / "src").glob("*.c")):
            obj = tmp_path / f"{name}-{source.stem}.o"
            done = subprocess.run(["gcc", "-std=c99", OPT, *STRICT, f"-I{folder / 'include'}", f"-I{folder / 'src'}",
                                   "-c", str(source), "-o", str(obj)], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            objects.append(obj)
            defined = subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True).stdout
            symbols = [line.split()[-1] for line in defined.splitlines() if line.strip()]
            assert symbols and all(s.startswith(f"{name}_") for s in symbols), (source.name, symbols)
    main = tmp_path / "main.cpp"
    main.write_text(
        '#include <cstdio>\n#include "wake.h"\n#include "digits.h"\n'
        'static float a[WAKE_WINDOW_SIZE], b[DIGITS_WINDOW_SIZE];\n'
        'int main() {\n'
        '  if (wake_setup() != WAKE_OK || digits_setup() != DIGITS_OK) return 1;\n'
        '  for (int i = 0; i < WAKE_WINDOW_SIZE; ++i) std::scanf("%f", &a[i]);\n'
        '  for (int i = 0; i < DIGITS_WINDOW_SIZE; ++i) std::scanf("%f", &b[i]);\n'
        '  wake_result r; digits_result s;\n'
        '  if (wake_classify(a, WAKE_WINDOW_SIZE, &r) != WAKE_OK) return 2;\n'
        '  if (digits_classify(b, DIGITS_WINDOW_SIZE, &s) != DIGITS_OK) return 3;\n'
        '  std::printf("%d %s %d %s\\n", r.index, r.label, s.index, s.label);\n'
        '  return 0;\n}\n')
    program = tmp_path / "both"
    done = subprocess.run(["g++", "-std=c++17", OPT, *STRICT, f"-I{tmp_path / 'wake/include'}",
                           f"-I{tmp_path / 'digits/include'}", str(main), *map(str, objects), "-o", str(program)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    alone = {}
    for name, which, windows in (("wake", "series", series_windows), ("digits", "digits", digits_windows)):
        lib = libraries(which)[0]  # the same model alone (under its own name)
        assert lib.setup() == 0
        alone[name] = lib.classify(windows[0])[1]
    text = " ".join(f"{v:.9g}" for v in [*series_windows[0], *digits_windows[0]])
    run = subprocess.run([str(program)], input=text, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    wake_index, wake_label, digits_index, digits_label = run.stdout.split()
    assert (int(wake_index), wake_label) == (alone["wake"].index, alone["wake"].label.decode())
    assert (int(digits_index), digits_label) == (alone["digits"].index, alone["digits"].label.decode())


@pytest.mark.host
def test_the_c_library_example_builds_and_prints_label_and_time(models, libraries, tmp_path):
    """The C library's example (its recording: the first digits validation windows), built
    with warnings as errors (by its CMakeLists.txt where cmake is installed), prints one line
    per window with the label classify() gives and a time."""
    _, windows, _ = models["digits"]
    lib, summary, folder = libraries("digits")  # a digits-shaped model: the digits demo is its recording
    name = summary["name"]
    program = tmp_path / "example"
    done = subprocess.run(["gcc", "-std=c99", OPT, *STRICT, f"-I{folder / 'include'}", f"-I{folder / 'src'}",
                           *map(str, sorted((folder / "src").glob("*.c"))), str(folder / f"examples/{name}/main.c"),
                           "-o", str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    outputs = [subprocess.run([str(program)], capture_output=True, text=True, timeout=60)]
    if shutil.which("cmake"):
        build = tmp_path / "build"
        for command in (["cmake", "-S", str(folder), "-B", str(build), "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"],
                        ["cmake", "--build", str(build)]):
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(subprocess.run([str(build / f"{name}_example")], capture_output=True, text=True, timeout=60))
    assert lib.setup() == 0
    expected = [lib.classify(w)[1].label.decode() for w in windows[:4]]
    for run in outputs:
        assert run.returncode == 0, run.stdout + run.stderr
        lines = re.findall(r"window (\d): (\S+) \(score [0-9.]+, expected '(\d)'\) in (\d+) us", run.stdout)
        assert [label for _, label, _, _ in lines] == expected, run.stdout
    assert "numeric labels" not in summary and any("no class labels" in n for n in summary["notes"])


@pytest.mark.host
def test_bad_input_gets_a_clear_error(models, tmp_path):
    """No labels: class numbers and a note. A name that is no C identifier: escaped. A window
    or sample of the wrong length, a NULL, a call before setup: error codes. A folder with the
    user's files: refused (exit 2), as render refuses."""
    model_path, windows, _ = models["digits"]
    folder = tmp_path / "lib"
    summary = _export(model_path, folder, "9 digits-model!")
    assert summary["name"] == "m9_digits_model" and summary["labels"] == [str(i) for i in range(10)]
    assert any("no class labels" in note for note in summary["notes"])
    lib = Library(folder, summary["name"], 10)
    code, _ = lib.classify(windows[0])
    assert code == -2 and "setup" in lib.error_text(code)  # not set up yet
    assert lib.setup() == 0
    code, _ = lib.classify(windows[0], length=windows[0].size - 1)
    assert code == -3 and "144 values" in lib.error_text(code)
    assert lib.fn("classify")(None, ctypes.c_size_t(144), None) == -4
    state, code = lib.stream(1, 99)
    assert code == -7  # smoothing over SMOOTHING_MAX
    state, code = lib.stream(0, 0)
    assert lib.push(state, windows[0][:12], channels=11)[0] == -3
    assert lib.error_text(-99) == "unknown error code"

    assert c_name("int") == "int_model" and c_name("__x__") == "x" and c_name("") == "model"
    with pytest.raises(BadInput, match="c-library takes the c engine"):
        export(load_model(model_path), get_board("esp32-s3-devkitc-1"), ExportOptions("c-library", "tflm"))
    with pytest.raises(BadInput, match="--window 7"):
        export(load_model(model_path), get_board("esp32-s3-devkitc-1"), ExportOptions("c-library", window=7))
    with pytest.raises(BadInput, match="--hop"):
        export(load_model(model_path), get_board("esp32-s3-devkitc-1"), ExportOptions("c-library", hop=0))

    user = tmp_path / "app"
    (user / "src").mkdir(parents=True)
    (user / "src/td_model.c").write_text("/* the user's own */\n")
    done = subprocess.run([sys.executable, "-m", "tinydeploy", "export", str(model_path), "--kind", "c-library",
                           "--out", str(user)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "src/td_model.c" in done.stderr and "--force" in done.stderr
    assert (user / "src/td_model.c").read_text() == "/* the user's own */\n"
    again = _export(model_path, folder, "9 digits-model!")  # its own files: written again
    assert again["files"]


@pytest.mark.host
def test_manifests_pass_the_ecosystems_own_parsers(models, tmp_path):
    """library.json and library.properties as PlatformIO's manifest parser reads them;
    idf_component.yml (and the example's) as idf-component-manager validates them: the TFLM
    export depends on esp-tflite-micro, the C engine's on nothing."""
    from platformio.package.manifest.parser import ManifestParserFactory
    from platformio.package.manifest.schema import ManifestSchema
    idf = pytest.importorskip("idf_component_tools.manager", reason="idf-component-manager (the test extra)")
    model_path = models["series"][0]
    for engine in ("tflm", "c"):
        arduino = tmp_path / f"arduino-{engine}"
        _export(model_path, arduino, "wake", "arduino-library", engine=engine)
        assert (arduino / "examples/wake/wake.ino").is_file() and (arduino / "src/wake.h").is_file()
        for manifest in ("library.json", "library.properties"):
            parsed = ManifestSchema().load_manifest(
                ManifestParserFactory.new_from_file(str(arduino / manifest)).as_dict())
            assert parsed["name"] == "wake" and parsed["version"] == "1.0.0" and parsed["headers"] == ["wake.h"]
            assert [d["name"] for d in parsed.get("dependencies", [])] == (
                ["Chirale_TensorFLowLite"] if engine == "tflm" else [])
        whole = ManifestParserFactory.new_from_dir(str(arduino)).as_dict()
        assert [e["name"] for e in whole["examples"]] == ["wake"]

        component = tmp_path / f"idf-{engine}"
        _export(model_path, component, "wake", "idf-component", engine=engine)
        checked = idf.ManifestManager(component, "wake", upload_mode=idf.UploadMode.component).validate()
        assert checked._validation_errors == [] and str(checked.manifest.version) == "1.0.0"
        dependencies = {d.name for d in checked.manifest.requirements}
        assert dependencies == ({"espressif/esp-tflite-micro"} if engine == "tflm" else set()) | (dependencies & {"idf"})
        example = idf.ManifestManager(component / "examples/wake/main", "main").validate()
        assert example._validation_errors == []
        assert [d.path for d in example.manifest.requirements if d.name.endswith("wake")] == ["../../.."]
        cmake = (component / "CMakeLists.txt").read_text()
        assert "idf_component_register(" in cmake and ("esp-tflite-micro" in cmake) == (engine == "tflm")
        sources = re.findall(r'"(src/[^"]+)"', cmake)
        assert sources and all((component / s).is_file() for s in sources)


def _host_check():
    """bench/firmware_host_check.py: TFLM and the ESP-IDF stand-ins compiled for this computer."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("firmware_host_check", ROOT / "bench/firmware_host_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.host
def test_the_tflm_component_runs_on_the_host_with_tflms_answers(models, tmp_path_factory):
    """The TFLM engine's ESP-IDF component (td_tflm_runner.cc, model_runner.cc, model_data.cc and
    the API), compiled with warnings as errors against an esp-tflite-micro tree and the host's
    ESP-IDF stand-ins: its example runs, and on every test window of the time-series model it
    gives the host TFLM's exact int8 outputs. Built 32-bit (gcc -m32, ILP32 like Xtensa and
    RV32), as bench/firmware_host_check.py builds firmware: the export's arena is sized for the
    board's 32-bit TFLM structs, which a 64-bit host build outgrows."""
    tflm_src = os.environ.get("TINYDEPLOY_TFLM_SRC")
    if not tflm_src:
        pytest.skip("TINYDEPLOY_TFLM_SRC is not set: give an espressif/esp-tflite-micro tree to build the TFLM "
                    "engine's library on the host")
    need_programs("gcc", "g++", packages="gcc-multilib g++-multilib")
    if subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", "/dev/null"], input=b"int main(void){return 0;}",
                      capture_output=True).returncode:
        missing("needs a 32-bit host compiler (Debian: apt-get install gcc-multilib g++-multilib)")
    check = _host_check()
    work = Path(os.environ.get("TINYDEPLOY_HOST_CHECK_WORK") or tmp_path_factory.mktemp("tflm-objects"))
    builder = check.Builder(work / "objects-32", 32)
    tflm = check.tflm_library(builder, "espidf", "reference", Path(tflm_src), None, None)
    model_path, windows, inputs = models["series"]
    folder = tmp_path_factory.mktemp("tflm-component")
    summary = _export(model_path, folder, "wake", "idf-component", engine="tflm", data=None)
    assert summary["engine"] == "tflm"
    flags = [*STRICT, "-O1", *tflm.platform, f"-I{folder / 'include'}", f"-I{folder / 'src'}",
             *(f"-isystem{p}" for p in tflm.includes), "-DTF_LITE_STATIC_MEMORY"]
    library = builder.compile(sorted(p for p in (folder / "src").iterdir() if p.suffix in (".c", ".cc")), flags)
    driver = folder / "driver.c"
    driver.write_text(
        '#include <stdio.h>\n#include "wake.h"\n'
        'void app_main(void);\n'
        'void app_main(void) {\n'
        '  static float window[WAKE_WINDOW_SIZE];\n'
        '  wake_result r;\n'
        '  int code = wake_setup();\n'
        '  if (code != WAKE_OK) { printf("setup: %s\\n", wake_error_text(code)); return; }\n'
        '  for (;;) {\n'
        '    for (int i = 0; i < WAKE_WINDOW_SIZE; ++i) if (scanf("%f", &window[i]) != 1) return;\n'
        '    if (wake_classify(window, WAKE_WINDOW_SIZE, &r) != WAKE_OK) { printf("failed\\n"); return; }\n'
        '    printf("%d", r.index);\n'
        '    for (int k = 0; k < WAKE_CLASSES; ++k) printf(" %.0f", r.scores[k] / WAKE_OUTPUT_SCALE + WAKE_OUTPUT_ZERO_POINT);\n'
        '    printf("\\n");\n'
        '  }\n'
        '}\n')
    runs = {}
    for name, main in (("driver", driver), ("example", folder / "examples/wake/main/main.c")):
        objects = builder.compile([main], flags)
        runs[name] = builder.link([*tflm.objects, *library, *objects], folder / name)
    example = subprocess.run([str(runs["example"])], capture_output=True, text=True, timeout=120)
    assert example.returncode == 0 and "window 0: " in example.stdout and " us" in example.stdout, example.stdout
    text = "\n".join(" ".join(f"{v:.9g}" for v in w) for w in windows)
    done = subprocess.run([str(runs["driver"])], input=text, capture_output=True, text=True, timeout=300)
    lines = done.stdout.split("\n")[:len(windows)]
    got = np.array([[int(v) for v in line.split()[1:]] for line in lines])
    reference = _tflm_outputs(model_path, inputs)
    print(f"tflm component: {int((got == reference).all(axis=1).sum())}/{len(windows)} windows with TFLM's outputs")
    assert np.array_equal(got, reference) and [int(line.split()[0]) for line in lines] == list(reference.argmax(1))


@pytest.mark.host
def test_tinydeploy_bench_checks_the_users_own_program(models, libraries, tmp_path):
    """The protocol linked into the user's program (NAME_bench_start on its port, every received
    byte to NAME_bench_feed): `tinydeploy bench` over a pty finds the model by its hash and
    validates it bit-exactly on labelled windows, as it does the benchmark firmware."""
    need_programs("gcc")
    _, summary, folder = libraries("series")
    main = tmp_path / "app.c"
    main.write_text(
        '#include <stdio.h>\n#include <time.h>\n#include "series.h"\n'
        'static void port_write(const char *data, size_t len) { fwrite(data, 1, len, stdout); fflush(stdout); }\n'
        'int main(void) {\n'
        '  int byte, seen = 0;\n'
        '  struct timespec pause = {0, 10000000L};\n'
        '  series_bench_start(port_write);\n'
        '  for (;;) {\n'
        '    byte = getchar();\n'
        '    if (byte != EOF) { seen = 1; series_bench_feed(byte); continue; }\n'
        '    if (feof(stdin) || seen) return 0; /* the port closed */\n'
        '    clearerr(stdin); /* nobody has the port open yet (EIO): wait for the host */\n'
        '    nanosleep(&pause, NULL);\n'
        '  }\n}\n')
    program = tmp_path / "app"
    done = subprocess.run(["gcc", "-std=gnu11", OPT, *STRICT, f"-I{folder / 'include'}", f"-I{folder / 'src'}",
                           *map(str, sorted((folder / "src").glob("*.c"))), str(main), "-o", str(program)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x, y = _series(60, 2)
    data = tmp_path / "windows.npz"
    np.savez(data, x_train=x, y_train=np.array(SERIES_LABELS)[y])
    outcome = _host_check().run_bench(program, tmp_path / "bench", models["series"][0], str(data), validate=30,
                                        timeout=60)
    assert outcome["exit_code"] == 0, outcome["stderr"] + outcome["firmware_stderr"]
    results = outcome["results"]
    assert results["device"]["library"] == "series" and results["device"]["engine"] == "c"
    assert results["validation"]["samples"] == 30 and results["validation"]["identical_outputs"] == 1.0


@pytest.mark.host
def test_the_arduino_example_runs_on_the_arduino_stand_ins(models, tmp_path):
    """The Arduino library (C engine) and its examples/NAME/NAME.ino, compiled with warnings as
    errors against the host's Arduino stand-ins (bench/host_shim/arduino: Serial, micros,
    setup() then loop()), print a label and a time per window on Serial."""
    need_programs("gcc", "g++")
    folder = tmp_path / "wake"
    summary = _export(models["series"][0], folder, "wake", "arduino-library", engine="c")
    shim = ROOT / "bench/host_shim"
    platform = [f"-I{shim / 'arduino'}", f"-I{shim}", "-DTD_LINE_BAUD=115200", f"-I{folder / 'src'}"]
    objects = []
    for source in [*sorted((folder / "src").iterdir()), folder / "examples/wake/wake.ino", shim / "host_uart.c",
                   shim / "arduino/arduino_shim.cc"]:
        if source.suffix not in (".c", ".cpp", ".cc", ".ino"):
            continue
        cxx = source.suffix != ".c"
        obj = tmp_path / f"{source.name}.o"
        command = ["g++", "-std=gnu++17", "-x", "c++"] if cxx else ["gcc", "-std=gnu11"]
        if source.suffix == ".ino":
            command += ["-include", "Arduino.h"]  # as the Arduino builder prepends it to a sketch
        done = subprocess.run([*command, OPT, *STRICT, *platform, "-c", str(source), "-o", str(obj)],
                              capture_output=True, text=True)
        assert done.returncode == 0, (source.name, done.stderr)
        objects.append(obj)
    program = tmp_path / "sketch"
    done = subprocess.run(["g++", *map(str, objects), "-o", str(program), "-lpthread"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, _ = run.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        run.kill()
        out, _ = run.communicate()
    lines = re.findall(r"window (\d): (\w+) \(score [0-9.]+, expected '([^']*)'\) in (\d+) us", out.decode(errors="replace"))
    assert lines and [int(i) for i, _, _, _ in lines] == list(range(len(lines))), out  # one a second
    assert all(label in summary["labels"] for _, label, _, _ in lines)


@pytest.mark.host
def test_the_tflm_component_compiles_with_every_strong_symbol_prefixed(models, tmp_path):
    """The TFLM engine's component sources compile with warnings as errors against an
    esp-tflite-micro tree's headers and the ESP-IDF stand-ins; every symbol they define for
    good carries the prefix (the rest are TFLM's own template instances, weak: the linker
    keeps one for both libraries)."""
    tflm_src = os.environ.get("TINYDEPLOY_TFLM_SRC")
    if not tflm_src:
        pytest.skip("TINYDEPLOY_TFLM_SRC is not set: give an espressif/esp-tflite-micro tree")
    need_programs("gcc", "g++", "nm")
    folder = tmp_path / "wake"
    _export(models["series"][0], folder, "wake", "idf-component", engine="tflm")
    root = Path(tflm_src)
    includes = [root, *(root / "third_party" / p for p in ("gemmlowp", "flatbuffers/include", "ruy", "kissfft"))]
    flags = [OPT, *STRICT, f"-I{ROOT / 'bench/host_shim/espidf'}", f"-I{ROOT / 'bench/host_shim'}",
             f"-I{folder / 'include'}", f"-I{folder / 'src'}", *(f"-isystem{p}" for p in includes),
             "-DTF_LITE_STATIC_MEMORY"]
    for source in sorted((folder / "src").iterdir()):
        if source.suffix not in (".c", ".cc"):
            continue
        compiler = ["g++", "-std=gnu++17"] if source.suffix == ".cc" else ["gcc", "-std=gnu11"]
        obj = tmp_path / f"{source.name}.o"
        done = subprocess.run([*compiler, *flags, "-c", str(source), "-o", str(obj)], capture_output=True, text=True)
        assert done.returncode == 0, (source.name, done.stderr[-3000:])
        listed = subprocess.run(["nm", "-g", "--defined-only", "-C", str(obj)], capture_output=True, text=True).stdout
        strong = [line.split(maxsplit=2)[2] for line in listed.splitlines()
                  if len(line.split()) >= 3 and line.split()[1] in "TDBR"]
        assert all("wake_" in symbol for symbol in strong), (source.name, strong)
