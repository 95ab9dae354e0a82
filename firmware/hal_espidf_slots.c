/* Flash for the model slots on ESP-IDF (td_slots.h): the partitions td_state, model_a and
 * model_b of the rendered partitions.csv, found by name, read in place with esp_partition_mmap
 * (the slots start on 64 KB MMU pages). */
#include "driver/uart.h"
#include "esp_partition.h"
#include "esp_system.h"
#include "freertos/FreeRTOS.h"
#include "td_slots.h"

static const char *const kNames[] = {"td_state", "model_a", "model_b"};
static const esp_partition_t *found[3];
static const void *mapped[3];
static esp_partition_mmap_handle_t handles[3];

static const esp_partition_t *partition(int part) {
  if (part < 0 || part > 2) return NULL;
  if (found[part] == NULL) {
    found[part] = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, kNames[part]);
  }
  return found[part];
}

uint32_t td_flash_size(int part) {
  const esp_partition_t *p = partition(part);
  return p ? (uint32_t)p->size : 0;
}

int td_flash_read(int part, uint32_t offset, void *data, size_t count) {
  const esp_partition_t *p = partition(part);
  return p && esp_partition_read(p, offset, data, count) == ESP_OK ? 0 : -1;
}

int td_flash_erase(int part, uint32_t offset, size_t count) {
  const esp_partition_t *p = partition(part);
  return p && esp_partition_erase_range(p, offset, count) == ESP_OK ? 0 : -1;
}

int td_flash_write(int part, uint32_t offset, const void *data, size_t count) {
  const esp_partition_t *p = partition(part);
  return p && esp_partition_write(p, offset, data, count) == ESP_OK ? 0 : -1;
}

const uint8_t *td_flash_map(int part) {
  const esp_partition_t *p = partition(part);
  if (p != NULL && mapped[part] == NULL &&
      esp_partition_mmap(p, 0, p->size, ESP_PARTITION_MMAP_DATA, &mapped[part], &handles[part]) != ESP_OK) {
    mapped[part] = NULL;
  }
  return (const uint8_t *)mapped[part];
}

void td_flash_restart(void) {
  uart_wait_tx_done(UART_NUM_0, pdMS_TO_TICKS(200)); /* the commit's reply goes out first */
  esp_restart();
}
