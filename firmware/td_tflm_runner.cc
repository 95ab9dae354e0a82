// The TensorFlow Lite Micro runner (td_runner.h), the same for every model: builds the
// interpreter on the model's operators and arena (the generated model_runner.cc), keeps why
// setup failed, times each operator for layers%, and fills the info line. The only file,
// with model_runner.cc, that talks to TFLM.
#include "td_tflm_runner.h"

#include <stdio.h>
#include <string.h>

#include "model_data.h"
#include "td_board.h"
#include "td_hal.h"
#include "td_runner.h"
#ifdef TD_MODEL_PARTITION
#include "td_main_slots.h"  // the model read in place from its flash slot (render --model-partition)
#define TD_MODEL_DATA td_model_slot_data()
#else
#define TD_MODEL_DATA g_model_data
#endif
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
tflite::MicroInterpreter *interpreter = nullptr;  // set only once the model is set up
char setup_error[TD_SETUP_ERROR_BYTES] = "";
size_t setup_error_length = 0;
bool capturing_log = false;

// Appends to the setup error as far as it fits, on one line.
void append_error(const char *text) {
  for (; *text && setup_error_length + 1 < sizeof(setup_error); text++) {
    char c = (*text == '\r' || *text == '\n') ? ' ' : *text;
    if (c == ' ' && (setup_error_length == 0 || setup_error[setup_error_length - 1] == ' ')) continue;
    setup_error[setup_error_length++] = c;
  }
  setup_error[setup_error_length] = '\0';
}

void set_error(const char *text) {
  setup_error_length = 0;
  append_error(text);
}

// layers%: TFLM calls a profiler around each operator's Invoke. This one keeps the times of
// the main graph's kLayerCount operators on the platform's clock, and only while profile()
// runs one inference; otherwise an operator costs two virtual calls that return at once.
// Events inside an operator (a called subgraph, a decompression step) count toward that operator.
class LayerTimer : public tflite::MicroProfilerInterface {
 public:
  static constexpr uint32_t kInner = 0xFFFFFFFFu;  // the handle of an event inside an operator

  void Start() {
    timing_ = true;
    count_ = 0;
    depth_ = 0;
  }
  void Stop() { timing_ = false; }
  size_t count() const { return count_; }
  const uint64_t *durations() const { return durations_; }

  uint32_t BeginEvent(const char *) override {
    if (!timing_ || depth_++ > 0 || count_ >= kLayerCount) return kInner;
    started_ = td_hal_ticks();
    return (uint32_t)count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (!timing_) return;
    depth_--;
    if (handle != kInner) durations_[handle] = td_hal_ticks() - started_;
  }

 private:
  bool timing_ = false;
  size_t count_ = 0;
  int depth_ = 0;
  uint64_t started_ = 0;
  uint64_t durations_[kLayerCount > 0 ? kLayerCount : 1] = {};
};
LayerTimer layer_timer;

// tflite::InitializeTarget() is not called: it does nothing in esp-tflite-micro, and the
// Arduino library's version restarts Serial at 9600 baud, cutting the host off.
int setup() {
#ifdef TD_MODEL_PARTITION
  // Only a slot can be empty (g_model_data is an array: comparing it with null is an error
  // under -Werror=address, so the check is made only where it can fail).
  if (TD_MODEL_DATA == nullptr) {
    set_error("no model slot can run (see the error printed at boot)");
    return -1;
  }
#endif
  const tflite::Model *model = tflite::GetModel(TD_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    char text[64];
    snprintf(text, sizeof(text), "model schema %d, runtime expects %d", (int)model->version(), TFLITE_SCHEMA_VERSION);
    set_error(text);
    return -1;
  }
  const char *failed = "";
  const tflite::MicroOpResolver *resolver = td_tflm_ops(&failed);
  if (resolver == nullptr) {
    set_error("could not register ");
    append_error(failed);
    return -1;
  }
  static tflite::MicroInterpreter static_interpreter(model, *resolver, td_tflm_arena, td_tflm_arena_bytes,
                                                     nullptr, &layer_timer);
  capturing_log = true;
  TfLiteStatus status = static_interpreter.AllocateTensors();
  capturing_log = false;
  if (status != kTfLiteOk) {
    // Our words, then TFLM's own where its log was captured (td_tflm_log).
    char captured[sizeof(setup_error)];
    memcpy(captured, setup_error, setup_error_length + 1);
    char size[16];
    snprintf(size, sizeof(size), "%u", (unsigned)td_tflm_arena_bytes);
    set_error("arena allocation failed with ");
    append_error(size);
    append_error(" bytes");
    if (captured[0] != '\0') {
      append_error(": ");
      append_error(captured);
    }
    return -1;
  }
  interpreter = &static_interpreter;
  return 0;
}

int invoke(void *) { return interpreter->Invoke() == kTfLiteOk ? 0 : -1; }

// layers%: one more inference with each operator of the main graph timed.
size_t profile(void *ctx, const uint64_t **durations) {
  layer_timer.Start();
  int failed = invoke(ctx);
  layer_timer.Stop();
  // Fewer events than operators: this TFLM build was made without its profiler calls
  // (TF_LITE_STRIP_ERROR_STRINGS), and there is nothing to report.
  if (failed || layer_timer.count() != kLayerCount) return 0;
  *durations = layer_timer.durations();
  return layer_timer.count();
}

// The info% JSON: arena_used_bytes() once set up; before that there is no arena figure to
// report: null, and the setup error.
size_t info(void *, char *buf, size_t size) {
  char used[24] = "null";
  char error[sizeof(setup_error) + 2] = "null";
  if (interpreter != nullptr) {
    snprintf(used, sizeof(used), "%lu", (unsigned long)interpreter->arena_used_bytes());
  } else {
    size_t n = 0;
    error[n++] = '"';
    for (const char *c = setup_error; *c; c++) error[n++] = (*c == '"' || *c == '\\' || (unsigned char)*c < 32) ? '\'' : *c;
    error[n++] = '"';
    error[n] = '\0';
  }
  int n = snprintf(buf, size, kInfoFormat, used, error);
  return n < 0 ? 0 : (size_t)n;
}
}  // namespace

// On ESP-IDF the library's log goes to the console on UART0: at boot, before the protocol
// starts, and tinydeploy bench shows those lines when the model cannot be set up.
void td_tflm_log(const char *text) {
  if (capturing_log) append_error(text);
}

extern "C" const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  platform->invoke = invoke;
  platform->info = info;
  platform->profile = profile;
  io->input_size = kInputBytes;
  io->output_size = kOutputBytes;
  if (setup() != 0) return setup_error;
  io->input = interpreter->input(0)->data.int8;
  io->output = interpreter->output(0)->data.int8;
  return nullptr;
}
