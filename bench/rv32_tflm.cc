/* TFLite Micro on the emulated RV32 board for bench/tflm_rv32.py: the interpreter with its
 * reference kernels runs the model in tflm_model.h (written by the script) on each of its
 * samples and prints, per sample, the instructions retired by Invoke() (minstret under QEMU
 * -icount: exact) and the output bytes in hex, as bench/rv32_unseen.c does for the C engine.
 * Also the bare-metal glue TFLM needs: DebugLog, the C++ runtime hooks it may call, and an
 * exit through QEMU virt's test device (sifive_test at 0x100000, hw/riscv/virt.c). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "td_hal.h"
#include "tflm_model.h"

namespace {

alignas(16) uint8_t arena[TFLM_ARENA_BYTES];

[[noreturn]] void board_exit(int code) {
  volatile uint32_t *test = reinterpret_cast<volatile uint32_t *>(0x100000);
  *test = code == 0 ? 0x5555u : (static_cast<uint32_t>(code) << 16) | 0x3333u;
  for (;;) __asm__ volatile("wfi");
}

void say(const char *format, ...) {
  char line[160];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line, format, args);
  va_end(args);
  if (n > static_cast<int>(sizeof line) - 1) n = sizeof line - 1;
  if (n > 0) td_hal_write(line, static_cast<size_t>(n));
}

[[noreturn]] void fail(const char *what) {
  say("fail %s\n", what);
  board_exit(1);
}

uint32_t instructions() {
  uint32_t count;
  __asm__ volatile("csrr %0, minstret" : "=r"(count));
  return count;
}

}  // namespace

extern "C" void DebugLog(const char *format, va_list args) {
  char line[160];
  int n = vsnprintf(line, sizeof line, format, args);
  if (n > static_cast<int>(sizeof line) - 1) n = sizeof line - 1;
  if (n > 0) td_hal_write(line, static_cast<size_t>(n));
}
extern "C" int DebugVsnprintf(char *buffer, size_t size, const char *format, va_list args) {
  return vsnprintf(buffer, size, format, args);
}
extern "C" void __cxa_pure_virtual() { fail("pure virtual call"); }
extern "C" void abort(void) { fail("abort"); }
extern "C" void __assert_func(const char *, int line, const char *, const char *expression) {
  say("fail assert line %d: %s\n", line, expression);
  board_exit(1);
}
void operator delete(void *) noexcept {}
void operator delete(void *, size_t) noexcept {}

extern "C" void td_main(void) {
  static tflite::MicroMutableOpResolver<TFLM_OP_COUNT> resolver;
#define TFLM_ADD(method) \
  if (resolver.method() != kTfLiteOk) fail(#method);
  TFLM_OPS(TFLM_ADD)
  static tflite::MicroInterpreter interpreter(tflite::GetModel(tflm_model), resolver, arena, sizeof arena);
  if (interpreter.AllocateTensors() != kTfLiteOk) fail("AllocateTensors");
  TfLiteTensor *input = interpreter.input(0);
  TfLiteTensor *output = interpreter.output(0);
  if (input->bytes != TD_MODEL_INPUT_BYTES || output->bytes != TFLM_OUTPUT_BYTES) fail("tensor sizes");
  say("arena %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()));
  for (int i = 0; i < TD_SAMPLES; ++i) {
    memcpy(input->data.int8, td_samples[i], TD_MODEL_INPUT_BYTES);
    const uint32_t start = instructions();
    if (interpreter.Invoke() != kTfLiteOk) fail("Invoke");
    const uint32_t spent = instructions() - start;
    say("run %d %lu ", i, static_cast<unsigned long>(spent));
    for (int k = 0; k < TFLM_OUTPUT_BYTES; ++k) say("%02x", static_cast<unsigned>(static_cast<uint8_t>(output->data.int8[k])));
    say("\n");
  }
  say("done\n");
  board_exit(0);
}
