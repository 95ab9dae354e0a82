// Platform for Arduino boards: Serial for the protocol, micros() for its clock; setup()
// and loop() run the firmware (td_main.c). TD_BAUD comes from the generated platformio.ini
// (build_src_flags). Arduino projects run TFLM, so this file also keeps the TFLM library's
// log out of the protocol stream.
#include <Arduino.h>
#include <Chirale_TensorFlowLite.h>  // the library's own header, so that Arduino builds it

#include "td_hal.h"
#include "td_tflm_runner.h"

// The library's log would go to Serial, into the protocol stream. platformio.ini links
// with -Wl,--wrap=DebugLog, so it comes here instead: kept in the setup error, if any.
extern "C" void __wrap_DebugLog(const char *text) { td_tflm_log(text); }

void td_hal_init(void) {
  // The default receive buffer is 256 B, about 22 ms of line at 115200. It must be set
  // before begin().
  Serial.setRxBufferSize(TD_RX_BUFFER_BYTES);
  Serial.begin(TD_BAUD);
}

void td_hal_write(const char *data, size_t len) { Serial.write((const uint8_t *)data, len); }

// -1 when no byte is waiting: td_main_run returns, and the Arduino core calls loop() again.
int td_hal_read(void) { return Serial.read(); }

uint64_t td_hal_ticks(void) { return (uint64_t)micros(); }

void setup() { td_main_setup(); }

void loop() { td_main_run(); }
