/* See esp_partition.h: partitions as files in $TD_HOST_FLASH; esp_restart as an exec of the
 * firmware itself (its serial port, stdin and stdout, kept), like a board's reset. */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver/uart.h"
#include "esp_partition.h"
#include "esp_system.h"

#define MAX_PARTITIONS 8

static esp_partition_t partitions[MAX_PARTITIONS];
static int partition_count;

static const char *path_of(const esp_partition_t *p, char *buf, size_t size) {
  const char *folder = getenv("TD_HOST_FLASH");
  snprintf(buf, size, "%s/%s.bin", folder ? folder : ".", p->label);
  return buf;
}

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                                const char *label) {
  char path[4096];
  struct stat info;
  int i;
  (void)subtype;
  for (i = 0; i < partition_count; ++i) {
    if (strcmp(partitions[i].label, label) == 0) return &partitions[i];
  }
  if (partition_count == MAX_PARTITIONS || strlen(label) >= sizeof(partitions[0].label)) return NULL;
  esp_partition_t *p = &partitions[partition_count];
  memset(p, 0, sizeof(*p));
  p->type = type;
  p->subtype = subtype;
  strcpy(p->label, label);
  if (stat(path_of(p, path, sizeof(path)), &info) != 0) return NULL;
  p->size = (uint32_t)info.st_size;
  return &partitions[partition_count++];
}

static int open_checked(const esp_partition_t *p, size_t offset, size_t size, int flags) {
  char path[4096];
  if (p == NULL || offset + size > p->size) return -1;
  return open(path_of(p, path, sizeof(path)), flags);
}

esp_err_t esp_partition_read(const esp_partition_t *p, size_t offset, void *dst, size_t size) {
  int fd = open_checked(p, offset, size, O_RDONLY);
  ssize_t got;
  if (fd < 0) return -1;
  got = pread(fd, dst, size, (off_t)offset);
  close(fd);
  return got == (ssize_t)size ? ESP_OK : -1;
}

esp_err_t esp_partition_write(const esp_partition_t *p, size_t offset, const void *src, size_t size) {
  unsigned char block[4096];
  const unsigned char *bytes = (const unsigned char *)src;
  size_t done = 0;
  int fd = open_checked(p, offset, size, O_RDWR);
  if (fd < 0) return -1;
  while (done < size) { /* NOR flash: writing only clears bits */
    size_t n = size - done < sizeof(block) ? size - done : sizeof(block), i;
    if (pread(fd, block, n, (off_t)(offset + done)) != (ssize_t)n) break;
    for (i = 0; i < n; ++i) block[i] &= bytes[done + i];
    if (pwrite(fd, block, n, (off_t)(offset + done)) != (ssize_t)n) break;
    done += n;
  }
  close(fd);
  return done == size ? ESP_OK : -1;
}

esp_err_t esp_partition_erase_range(const esp_partition_t *p, size_t offset, size_t size) {
  unsigned char block[4096];
  size_t done = 0;
  int fd;
  if (offset % 4096 || size % 4096) return -1; /* ESP-IDF: whole sectors only */
  fd = open_checked(p, offset, size, O_RDWR);
  if (fd < 0) return -1;
  memset(block, 0xFF, sizeof(block));
  while (done < size && pwrite(fd, block, sizeof(block), (off_t)(offset + done)) == (ssize_t)sizeof(block)) {
    done += sizeof(block);
  }
  close(fd);
  return done == size ? ESP_OK : -1;
}

esp_err_t esp_partition_mmap(const esp_partition_t *p, size_t offset, size_t size, esp_partition_mmap_memory_t memory,
                             const void **out_ptr, esp_partition_mmap_handle_t *out_handle) {
  int fd = open_checked(p, offset, size, O_RDONLY);
  void *mapped;
  (void)memory;
  if (fd < 0 || offset % 0x10000) { /* the MMU maps 64 KB pages */
    if (fd >= 0) close(fd);
    return -1;
  }
  mapped = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, (off_t)offset);
  close(fd);
  if (mapped == MAP_FAILED) return -1;
  *out_ptr = mapped;
  *out_handle = 1;
  return ESP_OK;
}

void esp_restart(void) {
  char *const argv[] = {(char *)"firmware", NULL};
  fflush(stdout);
  execv("/proc/self/exe", argv);
  _exit(1);
}
