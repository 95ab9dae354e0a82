/* The emulated board's startup gives thread-local storage a home: picolibc keeps errno
 * there, and before start_rv32.S set tp, a write to errno trapped and hung the firmware.
 * Built with the board profile's flags and run under QEMU by tests/test_cengine.py. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "td_hal.h"
extern char __tls_base[], __tls_end[], __bss_start[], __bss_end[];
__thread int initialised = 7;
__thread int cleared;
int plain[4];
void td_main(void) {
  char text[160];
  long big;
  int n, inside, after;
  errno = 0;
  big = strtol("99999999999999999999", NULL, 10);
  initialised += 1;
  plain[1] = 5;
  inside = (char *)&errno >= __tls_base && (char *)&errno < __tls_end;
  after = (char *)plain >= __tls_end && (char *)(plain + 4) <= __bss_end;
  n = snprintf(text, sizeof(text), "errno %d ERANGE %d inside %d initialised %d cleared %d max %d bss-after-tls %d\n",
               errno, ERANGE, inside, initialised, cleared, big == 2147483647L, after);
  td_hal_write(text, (size_t)n);
  for (;;) {
  }
}
