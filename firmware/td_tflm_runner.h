// The TensorFlow Lite Micro runner comes in two halves: td_tflm_runner.cc, the same for
// every model, and the generated model_runner.cc, which defines what is declared here:
// the model's operators and its arena. C++ only.
#ifndef TD_TFLM_RUNNER_H_
#define TD_TFLM_RUNNER_H_

#include <stddef.h>
#include <stdint.h>

namespace tflite {
class MicroOpResolver;
}

// The tensor arena (16-byte aligned, in internal RAM) and its size in bytes.
extern uint8_t *const td_tflm_arena;
extern const size_t td_tflm_arena_bytes;

// Registers exactly the model's operators; called once. Null when one cannot be
// registered, with its name in *failed.
const tflite::MicroOpResolver *td_tflm_ops(const char **failed);

// TFLM's log text while tensors are allocated becomes part of the setup error, where the
// framework routes the library's log here (hal_arduino.cpp).
void td_tflm_log(const char *text);

#endif  // TD_TFLM_RUNNER_H_
