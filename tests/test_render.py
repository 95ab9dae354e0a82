import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinydeploy.costs import arena, kernels
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import get_board, load_boards
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import load_model
from tinydeploy.toolchain.project import create_project, write_project
from tinydeploy.codegen.render import FRAMEWORKS, RenderOptions, arena_size, render
from tinydeploy.codegen.templating import BANNER

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def measured(int8_cnn):
    return tflm.measure_arena(load_model(int8_cnn))


def board_need(int8_cnn, board, framework, measured):
    return arena.for_board(load_model(int8_cnn), measured, board, framework).arena_bytes


def pio_config(project):
    done = subprocess.run([sys.executable, "-m", "platformio", "project", "config", "-d", str(project),
                           "--json-output"], capture_output=True, text=True, timeout=120, check=True)
    return {env: dict(options) for env, options in json.loads(done.stdout)}


@pytest.mark.parametrize("board_name, framework", [(name, f) for name, b in sorted(load_boards().items())
                                                   if "tflm" in b.engines
                                                   for f, framework in FRAMEWORKS.items() if framework.applies_to(b)])
def test_rendered_project_for_every_board(tmp_path, int8_cnn, int8_cnn_per_tensor_dense, measured, board_name,
                                          framework):
    board = get_board(board_name)
    labels = tuple(f"class {i}" for i in range(10))
    if FRAMEWORKS[framework].model_problems(load_model(int8_cnn)):  # Arduino: per-tensor dense layers only
        int8_cnn = int8_cnn_per_tensor_dense
        measured = tflm.measure_arena(load_model(int8_cnn))
    model = load_model(int8_cnn)
    files = render(model, board, measured, RenderOptions(framework, 10.0, labels))
    write_project(files, tmp_path)
    # PlatformIO itself parses the generated platformio.ini.
    env = pio_config(tmp_path)[f"env:{board.name}"]
    assert env["platform"] == board.platformio["platform"] and env["board"] == board.platformio["board"]
    assert env["framework"] == [framework]
    assert env["board_build.f_cpu"] == f"{board.cpu_mhz * 1_000_000}L"
    assert env["monitor_speed"] == board.baud and env["upload_speed"] == board.fast_baud
    # The op resolver registers exactly the model's operators, checking every status.
    runner = files["src/model_runner.cc"]
    registered = re.findall(r"resolver\.(Add\w+)\(\) != kTfLiteOk", runner)
    expected = sorted(tflm.RESOLVER_METHODS[op.name] for op in {o.name: o for o in model.operators}.values())
    assert sorted(registered) == expected
    assert f"MicroMutableOpResolver<{len(expected)}>" in runner
    assert "ErrorReporter" not in runner and "AllOpsResolver" not in runner
    # The arena is what this board needs with its kernel library, plus the margin.
    need = board_need(int8_cnn, board, framework, measured)
    assert f"constexpr size_t kArenaSize = {arena_size(need, 10.0)};" in runner
    assert arena_size(need, 10.0) >= need * 1.1 and arena_size(need, 10.0) % 16 == 0
    assert kernels.library(board.tflm_kernels(framework)).description in runner
    # No InitializeTarget(): Chirale's restarts Serial at 9600 baud. The runner's logic is
    # tinydeploy's own firmware, copied; the generated half holds only the model's definitions.
    runtime = files["src/td_tflm_runner.cc"]
    for text in (runner, runtime):
        assert "InitializeTarget()" not in text.replace("tflite::InitializeTarget() is not called", "")
    assert runtime.endswith((ROOT / "firmware" / "td_tflm_runner.cc").read_text())
    assert "MicroInterpreter" not in runner and "class " not in runner
    assert f"constexpr size_t kLayerCount = {len(model.operators)};" in files["src/model_data.h"]
    for path, text in files.items():
        assert BANNER in text, path
    assert "#ifndef TINYDEPLOY_MODEL_DATA_H_" in files["src/model_data.h"]
    if framework == "espidf":
        assert 'espressif/esp-tflite-micro: ">=1.3.7"' in files["src/idf_component.yml"]
        assert f"CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_{board.cpu_mhz}=y" in files["sdkconfig.defaults"]
        assert "CONSOLE_UART_BAUDRATE" not in files["sdkconfig.defaults"]  # Kconfig drops it
        hal = files["src/hal_espidf.c"]
        assert "uart_driver_install(TD_UART, TD_RX_BUFFER_BYTES," in hal and "esp_timer_get_time" in hal
        assert f"TD_BAUD={board.baud})" in files["src/CMakeLists.txt"]
        sources = re.search(r'SRCS((?: "[^"]+")+)', files["src/CMakeLists.txt"]).group(1).split()
        assert sorted(s.strip('"') for s in sources) == sorted(p[4:] for p in files if re.match(r"src/.*\.cc?$", p))
    else:
        assert "Chirale_TensorFLowLite" in env["lib_deps"][0] if isinstance(env["lib_deps"], list) \
            else "Chirale_TensorFLowLite" in env["lib_deps"]
        assert "TensorFlowLite_ESP32" not in "".join(files.values())
        hal = files["src/hal_arduino.cpp"]
        assert hal.index("Serial.setRxBufferSize(TD_RX_BUFFER_BYTES)") < hal.index("Serial.begin(TD_BAUD)")
        assert env["build_src_flags"] == [f"-DTD_BAUD={board.baud}"]
        assert env["build_flags"] == ["-Wl,--wrap=DebugLog"] and "__wrap_DebugLog" in hal
    assert "#define TD_RX_BUFFER_BYTES 4096" in files["src/td_hal.h"]


def test_model_array_compiles_and_decodes_to_the_same_bytes(tmp_path, int8_cnn, measured):
    """The generated C array, compiled with warnings as errors and run, gives back the .tflite bytes."""
    model = load_model(int8_cnn)
    files = render(model, get_board("esp32dev"), measured, RenderOptions(labels=("a",) * 10))
    write_project(files, tmp_path)
    (tmp_path / "dump.cc").write_text(
        '#include <stdio.h>\n#include "model_data.h"\n'
        "int main() {\n"
        "  if ((reinterpret_cast<unsigned long>(g_model_data) % 16) != 0) return 3;\n"
        "  fwrite(g_model_data, 1, g_model_data_len, stdout);\n"
        "  fprintf(stderr, \"%s %d %s\", g_model_sha256, kLabelCount, g_model_labels[9]);\n"
        "  return 0;\n}\n")
    exe = tmp_path / "dump"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path / 'src'}",
                    str(tmp_path / "src" / "model_data.cc"), str(tmp_path / "dump.cc"), "-o", str(exe)], check=True)
    done = subprocess.run([str(exe)], capture_output=True, check=True)
    assert done.stdout == int8_cnn.read_bytes()
    assert done.stderr.decode() == f"{model.sha256} 10 a"
    # The protocol core shipped into the project compiles as C99 with warnings as errors too.
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(tmp_path / "src" / "td_protocol.c"),
                    "-o", str(tmp_path / "td_protocol.o")], check=True)


def test_device_info_line_is_json(int8_cnn, measured):
    model = load_model(int8_cnn)
    files = render(model, get_board("esp32-c3-devkitm-1"), measured)
    board = get_board("esp32-c3-devkitm-1")
    literal = json.loads(re.search(r"kInfoFormat\[\] = (\".*\");", files["src/td_board.c"]).group(1))
    info = json.loads(literal % ("1234", "null"))
    assert info["arena_used_bytes"] == 1234 and info["setup_error"] is None
    assert info["arena_bytes"] == arena_size(board_need(int8_cnn, board, "espidf", measured), 10)
    assert info["model_sha256"] == model.sha256 and info["model_bytes"] == model.size_bytes
    assert info["board"] == "esp32-c3-devkitm-1" and info["cpu_mhz"] == 160 and info["kernels"] == "esp-nn"
    failed = json.loads(literal % ("null", '"arena allocation failed with 64 bytes"'))
    assert failed["arena_used_bytes"] is None and failed["setup_error"].startswith("arena allocation failed")
    assert info["input"]["shape"] == [1, 32, 32, 1] and info["input"]["dtype"] == "int8"


def test_float_model_is_refused(float_cnn, tmp_path):
    with pytest.raises(BadInput, match="float model: .*; run `tinydeploy optimize`, or give a fully int8"):
        create_project(float_cnn, get_board("esp32dev"), tmp_path, RenderOptions())
    assert not list(tmp_path.iterdir())


def test_a_model_of_two_inputs_is_refused_for_tflm_firmware(tmp_path):
    import numpy as np
    from tinydeploy.runtime import _tf
    tf, keras = _tf.tensorflow(), _tf.keras()
    a, b = keras.layers.Input((8,)), keras.layers.Input((8,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 8), v, np.float32)] * 2 for v in np.linspace(0, 1, 8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "two.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(BadInput, match="two.tflite: 2 inputs and 1 output: the firmware feeds one input tensor"):
        create_project(path, get_board("esp32dev"), tmp_path / "out", RenderOptions())


def test_a_16x8_quantized_model_is_refused_as_what_it_is(tmp_path):
    import numpy as np
    from tinydeploy.runtime import _tf
    tf, layers = _tf.tensorflow(), _tf.keras().layers
    model = _tf.keras().Sequential([layers.Input((16,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 16), v, np.float32)] for v in np.linspace(0, 1, 8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    path = tmp_path / "int16.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(BadInput, match="int16.tflite: not an int8 model: FULLY_CONNECTED computes in int16"):
        create_project(path, get_board("esp32dev"), tmp_path / "out", RenderOptions())


def test_unsupported_ops_are_all_listed(unsupported_ops_model, tmp_path):
    with pytest.raises(BadInput, match="ops TFLM does not support: REDUCE_PROD, TOPK_V2"):
        create_project(unsupported_ops_model, get_board("esp32dev"), tmp_path, RenderOptions())


def test_arena_over_the_board_budget_names_both_numbers(int8_cnn, measured):
    small = dataclasses.replace(get_board("esp32dev"), arena_budget_kb=4)
    need = board_need(int8_cnn, small, "espidf", measured)
    with pytest.raises(BadInput, match=f"arena is {arena_size(need, 10)} bytes .* has 4096 bytes"):
        render(load_model(int8_cnn), small, measured)


def test_label_count_must_match_outputs(int8_cnn, measured):
    with pytest.raises(BadInput, match="3 labels given but the model has 10 outputs"):
        render(load_model(int8_cnn), get_board("esp32dev"), measured, RenderOptions(labels=("a", "b", "c")))


def test_user_files_are_never_overwritten(tmp_path):
    (tmp_path / "platformio.ini").write_text("[env:mine]\n")
    with pytest.raises(BadInput, match="did not generate: platformio.ini"):
        write_project({"platformio.ini": f"; {BANNER}\n"}, tmp_path)
    assert (tmp_path / "platformio.ini").read_text() == "[env:mine]\n"


def _files(*names, extra=""):
    return {name: f"// {BANNER}\n{extra}" for name in names}


@pytest.mark.unit
def test_an_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="--out is empty"):
        write_project(_files("a.c"), "")
    assert not list(tmp_path.iterdir())


@pytest.mark.unit
def test_symlinks_are_never_followed_out_of_the_folder(tmp_path):
    out, outside = tmp_path / "project", tmp_path / "elsewhere"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.c").symlink_to(outside / "main.c")  # dangling
    with pytest.raises(BadInput, match="is a symlink"):
        write_project(_files("src/main.c", "README.md"), out)
    (out / "src" / "main.c").unlink()
    (out / "lib").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadInput, match="is a symlink"):
        write_project(_files("lib/x.c"), out)
    assert not outside.exists() and not (out / "README.md").exists()


@pytest.mark.unit
def test_a_folder_at_a_generated_path_is_bad_input(tmp_path):
    (tmp_path / "README.md").mkdir()
    with pytest.raises(BadInput, match="is a folder where tinydeploy writes a file"):
        write_project(_files("README.md"), tmp_path)


@pytest.mark.unit
def test_a_rerender_removes_only_its_own_stale_files(tmp_path):
    write_project(_files("Makefile", "src/board_ld.ld", "src/main.c"), tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    write_project(_files("platformio.ini", "src/main.c"), tmp_path)  # another board's layout
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
        [".tinydeploy-manifest.json", "notes.txt", "platformio.ini", "src/main.c"]


@pytest.mark.unit
def test_the_component_lock_goes_only_when_our_component_list_changes(tmp_path):
    (tmp_path / "dependencies.lock").write_text("the user's own\n")
    write_project(_files("src/idf_component.yml", extra="v1"), tmp_path)
    assert (tmp_path / "dependencies.lock").exists()  # not ours: no earlier render here
    write_project(_files("src/idf_component.yml", extra="v1"), tmp_path)
    assert (tmp_path / "dependencies.lock").exists()  # same components: the lock still holds
    write_project(_files("src/idf_component.yml", extra="v2"), tmp_path)
    assert not (tmp_path / "dependencies.lock").exists()  # stale pins of the earlier components


def test_a_project_for_a_user_board_finds_its_profile_again(tmp_path, int8_cnn, monkeypatch):
    """build, flash and emulate read the board from the project: a user's profile too, without --boards-dir."""
    from tinydeploy.core.boards import board_from_file
    from tinydeploy.core.manifest import rendered_board
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = open(get_board("esp32dev").path).read().replace('name = "esp32dev"', 'name = "lab.esp32"')
    (profiles / "lab.toml").write_text(text)
    board = board_from_file(profiles / "lab.toml")
    create_project(int8_cnn, board, tmp_path / "fw", RenderOptions())
    recorded = json.loads((tmp_path / "fw" / "tinydeploy.json").read_text())
    assert recorded["board"] == "lab.esp32" and recorded["board_profile"] == str(profiles / "lab.toml")
    assert rendered_board(tmp_path / "fw") == board
    assert "env:lab.esp32" in pio_config(tmp_path / "fw")  # PlatformIO accepts the name as an environment


def _combinations():
    """Every (board, engine, framework) tinydeploy renders."""
    from tinydeploy.codegen.engines import ENGINES
    for name, board in sorted(load_boards().items()):
        for engine in board.engines:
            for framework, f in FRAMEWORKS.items():
                if f.applies_to(board) and engine in f.engines:
                    yield name, engine, framework
    assert all(any(e in f.engines for f in FRAMEWORKS.values()) for e in ENGINES)  # every engine is built


@pytest.mark.parametrize("board_name, engine, framework", list(_combinations()))
def test_every_generated_file_of_every_engine_and_framework_carries_the_banner(int8_cnn, int8_cnn_per_tensor_dense,
                                                                               measured, board_name, engine, framework):
    if FRAMEWORKS[framework].model_problems(load_model(int8_cnn)):  # Arduino: per-tensor dense layers only
        int8_cnn, measured = int8_cnn_per_tensor_dense, None
    files = render(load_model(int8_cnn), get_board(board_name), measured, RenderOptions(framework, engine=engine))
    assert "src/td_board.c" in files and "tinydeploy.json" in files
    unmarked = [path for path, text in files.items() if BANNER not in text]
    assert not unmarked, f"generated without the banner: {unmarked}"
    header = files["src/td_board.h"]
    assert "extern const char kInfoFormat[];" in header and "static" not in header  # data lives in td_board.c
    # Every engine and framework runs the one shared main, on its platform's layer (td_hal.h).
    assert files["src/td_main.c"].endswith((ROOT / "firmware" / "td_main.c").read_text())
    assert not {"src/main.cc", "src/main.cpp"} & set(files)
