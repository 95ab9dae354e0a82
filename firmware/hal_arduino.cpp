// Platform for Arduino boards: Serial for the protocol, micros() for its clock; for the
// duty-cycled firmware, a pin as the marker and the ESP32 core's esp_sleep calls with a
// timer wakeup. setup() and loop() run the firmware (td_main.c or td_duty.c). TD_BAUD comes from the generated platformio.ini
// (build_src_flags). Arduino projects run TFLM, so this file also keeps the TFLM library's
// log out of the protocol stream.
#include <Arduino.h>
#include <Chirale_TensorFlowLite.h>  // the library's own header, so that Arduino builds it
#include <esp_sleep.h>

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

static int marker_pin = -1;

void td_hal_marker_setup(int gpio) {
  marker_pin = gpio;
  if (gpio < 0) return;
  pinMode(gpio, OUTPUT);
  digitalWrite(gpio, LOW);
}

void td_hal_marker(int level) {
  if (marker_pin >= 0) digitalWrite(marker_pin, level ? HIGH : LOW);
}

void td_hal_sleep_us(uint64_t us, int mode) {
  if (mode == TD_SLEEP_AWAKE) {
    // micros() is 32 bits: wait in steps that its wrap-around can't confuse
    while (us > 0) {
      unsigned long step = us > 1000000UL ? 1000000UL : (unsigned long)us, start = micros();
      while ((unsigned long)(micros() - start) < step) {
      }
      us -= step;
    }
    return;
  }
  Serial.flush();  // the UART stops in sleep: send what is queued first
  esp_sleep_enable_timer_wakeup(us);
  if (mode == TD_SLEEP_DEEP) esp_deep_sleep_start();  // does not return: setup() runs again on waking
  esp_light_sleep_start();
}

void setup() { td_main_setup(); }

void loop() { td_main_run(); }
