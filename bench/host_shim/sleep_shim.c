/* Host stand-ins for ESP sleep (esp_sleep.h), shared by the ESP-IDF and Arduino shims. Every
 * call is recorded (host_uart.c's td_shim_record). A timer wakeup is armed, then light sleep sleeps that long for real (the clock
 * goes on, as esp_timer's does through light sleep), and deep sleep runs the program again
 * from the start, as the chip boots again. TD_SHIM_SLEEPS, when set, is how many sleeps to
 * allow in all (across those boots): the process ends at the one after them. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "esp_sleep.h"
#include "host_uart.h"

static uint64_t wakeup_us;

/* Counts a sleep; ends the program when TD_SHIM_SLEEPS are used up. */
static void count_sleep(void) {
  const char *left = getenv("TD_SHIM_SLEEPS");
  char text[24];
  long n;
  if (left == NULL) return;
  n = strtol(left, NULL, 10);
  if (n <= 0) {
    td_shim_record("end", 0);
    exit(0);
  }
  snprintf(text, sizeof text, "%ld", n - 1);
  setenv("TD_SHIM_SLEEPS", text, 1);
}

int esp_sleep_enable_timer_wakeup(uint64_t time_in_us) {
  wakeup_us = time_in_us;
  return 0;
}

int esp_light_sleep_start(void) {
  struct timespec pause;
  count_sleep();
  td_shim_record("light_sleep_us", (long long)wakeup_us);
  pause.tv_sec = (time_t)(wakeup_us / 1000000u);
  pause.tv_nsec = (long)(wakeup_us % 1000000u) * 1000L;
  nanosleep(&pause, NULL);
  return 0;
}

void esp_deep_sleep_start(void) {
  struct timespec pause;
  count_sleep();
  td_shim_record("deep_sleep_us", (long long)wakeup_us);
  pause.tv_sec = (time_t)(wakeup_us / 1000000u);
  pause.tv_nsec = (long)(wakeup_us % 1000000u) * 1000L;
  nanosleep(&pause, NULL);
  fflush(NULL);
  execl("/proc/self/exe", "firmware", (char *)NULL); /* boot again */
  td_shim_record("reboot_failed", 0);
  exit(1);
}
