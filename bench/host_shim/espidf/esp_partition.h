/* Host stand-in for the ESP-IDF partition API calls of firmware/hal_espidf_slots.c: the data
 * partitions are files in the folder $TD_HOST_FLASH (NAME.bin, as tinydeploy/device/slots.py's
 * FileFlash keeps them), mapped with mmap. Signatures as ESP-IDF 5's esp_partition.h. */
#ifndef TD_SHIM_ESP_PARTITION_H_
#define TD_SHIM_ESP_PARTITION_H_

#include <stddef.h>
#include <stdint.h>

#include "driver/uart.h" /* esp_err_t, ESP_OK */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ESP_PARTITION_TYPE_APP = 0x00, ESP_PARTITION_TYPE_DATA = 0x01 } esp_partition_type_t;
typedef enum { ESP_PARTITION_SUBTYPE_ANY = 0xff } esp_partition_subtype_t;
typedef enum { ESP_PARTITION_MMAP_DATA, ESP_PARTITION_MMAP_INST } esp_partition_mmap_memory_t;
typedef uint32_t esp_partition_mmap_handle_t;

typedef struct {
  esp_partition_type_t type;
  esp_partition_subtype_t subtype;
  uint32_t address;
  uint32_t size;
  char label[17];
} esp_partition_t;

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                                const char *label);
esp_err_t esp_partition_read(const esp_partition_t *partition, size_t src_offset, void *dst, size_t size);
esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset, const void *src, size_t size);
esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset, size_t size);
esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset, size_t size,
                             esp_partition_mmap_memory_t memory, const void **out_ptr,
                             esp_partition_mmap_handle_t *out_handle);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_ESP_PARTITION_H_ */
