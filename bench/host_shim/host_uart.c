/* See host_uart.h and README.md. */
#define _POSIX_C_SOURCE 200809L
#include "host_uart.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef TD_LINE_BAUD
#define TD_LINE_BAUD 115200
#endif

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t arrived = PTHREAD_COND_INITIALIZER;
static pthread_cond_t room = PTHREAD_COND_INITIALIZER; /* taken bytes made room (flow control) */
static uint8_t *ring;
static size_t ring_size, ring_head, ring_count, wanted_rx_size;
static uint32_t baud;
static int started, reader_running, closed;
static unsigned long dropped;

uint64_t td_host_micros(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* One line "MICROS EVENT VALUE" in the file TD_SHIM_RECORD names (none: not recorded). Here,
 * beside the clock, as every host build links this file and the sleep, GPIO and boot
 * stand-ins all record. */
void td_shim_record(const char *event, long long value) {
  const char *path = getenv("TD_SHIM_RECORD");
  FILE *file;
  if (path == NULL || (file = fopen(path, "a")) == NULL) return;
  fprintf(file, "%llu %s %lld\n", (unsigned long long)td_host_micros(), event, value);
  fclose(file);
}

/* The count of dropped bytes goes to the file TD_HOST_UART_REPORT names (stderr may be the console). */
static void report(void) {
  const char *path = getenv("TD_HOST_UART_REPORT");
  FILE *out = path ? fopen(path, "w") : stderr;
  if (out == NULL) return;
  fprintf(out, "host uart: %lu received bytes dropped (receive buffer full)\n", dropped);
  if (out != stderr) fclose(out);
}

static void sleep_until(uint64_t micros) {
  uint64_t now = td_host_micros();
  if (micros > now) {
    struct timespec pause = {(time_t)((micros - now) / 1000000u), (long)((micros - now) % 1000000u) * 1000};
    nanosleep(&pause, NULL);
  }
}

/* Bytes reach the receive buffer no faster than the line carries them. With TD_HOST_UART_FLOW
 * set, the line has hardware flow control (RTS/CTS): a byte waits while the buffer is full
 * instead of being dropped, so a test of what the firmware computes does not depend on how
 * promptly a loaded machine schedules it. */
static void *reader(void *unused) {
  uint64_t next = td_host_micros();
  const uint64_t per_byte = 10000000u / TD_LINE_BAUD; /* 10 bits a byte, in tenths of a µs */
  uint64_t tenths = 0;
  const int flow = getenv("TD_HOST_UART_FLOW") != NULL;
  (void)unused;
  for (;;) {
    uint8_t byte;
    ssize_t n = read(0, &byte, 1);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    tenths += per_byte;
    next += tenths / 10u;
    tenths %= 10u;
    if (next < td_host_micros()) next = td_host_micros();
    sleep_until(next);
    pthread_mutex_lock(&lock);
    if (baud != TD_LINE_BAUD) byte = 0xF8; /* another baud rate reads as garbage */
    while (flow && started && ring_count == ring_size) pthread_cond_wait(&room, &lock);
    if (!started || ring_count == ring_size) {
      dropped++;
    } else {
      ring[(ring_head + ring_count++) % ring_size] = byte;
      pthread_cond_broadcast(&arrived);
    }
    pthread_mutex_unlock(&lock);
  }
  pthread_mutex_lock(&lock);
  closed = 1;
  pthread_cond_broadcast(&arrived);
  pthread_mutex_unlock(&lock);
  return NULL;
}

void td_uart_set_rx_size(size_t rx_size) {
  pthread_mutex_lock(&lock);
  wanted_rx_size = rx_size;
  pthread_mutex_unlock(&lock);
}

void td_uart_begin(uint32_t rate, size_t rx_size) {
  pthread_mutex_lock(&lock);
  if (rx_size == 0) rx_size = wanted_rx_size ? wanted_rx_size : 256;
  if (rx_size != ring_size) {
    free(ring);
    ring = (uint8_t *)malloc(rx_size);
    ring_size = rx_size;
    ring_head = ring_count = 0;
    pthread_cond_broadcast(&room);
  }
  baud = rate;
  started = 1;
  if (!reader_running) {
    pthread_t thread;
    reader_running = 1;
    atexit(report);
    pthread_create(&thread, NULL, reader, NULL);
    pthread_detach(thread);
  }
  pthread_mutex_unlock(&lock);
}

void td_uart_set_baud(uint32_t rate) {
  pthread_mutex_lock(&lock);
  baud = rate;
  pthread_mutex_unlock(&lock);
}

int td_uart_started(void) { return started; }

void td_uart_write(const void *data, size_t len) {
  const uint8_t *bytes = (const uint8_t *)data;
  size_t i;
  if (!started) return;
  if (baud != TD_LINE_BAUD) {
    for (i = 0; i < len; i++) {
      uint8_t garbage = 0xF8;
      if (write(1, &garbage, 1) < 0) return;
    }
    return;
  }
  while (len > 0) {
    ssize_t n = write(1, bytes, len);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    bytes += n;
    len -= (size_t)n;
  }
}

size_t td_uart_available(void) {
  size_t n;
  pthread_mutex_lock(&lock);
  n = ring_count;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t td_uart_read(void *data, size_t len, int timeout_ms) {
  uint8_t *out = (uint8_t *)data;
  size_t n = 0;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  if (timeout_ms > 0) {
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&lock);
  while (ring_count == 0 && timeout_ms != 0) {
    if (closed) {
      pthread_mutex_unlock(&lock);
      exit(0); /* the host closed the port: the check is over */
    }
    if (timeout_ms < 0) {
      pthread_cond_wait(&arrived, &lock);
    } else if (pthread_cond_timedwait(&arrived, &lock, &until) != 0) {
      break;
    }
  }
  while (n < len && ring_count > 0) {
    out[n++] = ring[ring_head];
    ring_head = (ring_head + 1) % ring_size;
    ring_count--;
  }
  if (n > 0) pthread_cond_broadcast(&room);
  pthread_mutex_unlock(&lock);
  return n;
}
