// Host stand-ins for the Arduino calls, and a main() that runs setup() then loop()
// forever, as the Arduino core's startup code does.
#include <time.h>

#include "Arduino.h"
#include "esp_sleep.h"

HardwareSerial Serial;

unsigned long micros(void) { return (unsigned long)td_host_micros(); }
unsigned long millis(void) { return (unsigned long)(td_host_micros() / 1000u); }
void delay(unsigned long ms) {
  struct timespec pause = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
  nanosleep(&pause, nullptr);
}

void pinMode(uint8_t pin, uint8_t mode) { td_shim_record(mode == OUTPUT ? "gpio_output" : "gpio_mode", pin); }
void digitalWrite(uint8_t pin, uint8_t value) { td_shim_record(value ? "marker_high" : "marker_low", pin); }

void setup();
void loop();

int main() {
  td_shim_record("boot", 0);
  setup();
  for (;;) {
    loop();
    if (td_uart_available() == 0) {
      uint8_t none;
      td_uart_read(&none, 0, 5);  // idle until a byte arrives (or 5 ms), instead of spinning
    }
  }
}
