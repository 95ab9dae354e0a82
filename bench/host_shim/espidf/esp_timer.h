/* Host stand-in for esp_timer_get_time(): microseconds since an arbitrary start. */
#ifndef TD_SHIM_ESP_TIMER_H_
#define TD_SHIM_ESP_TIMER_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int64_t esp_timer_get_time(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_ESP_TIMER_H_ */
