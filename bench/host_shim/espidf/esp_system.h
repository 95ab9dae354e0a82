/* Host stand-in for esp_restart: the firmware starts again (exec of itself, the serial port kept). */
#ifndef TD_SHIM_ESP_SYSTEM_H_
#define TD_SHIM_ESP_SYSTEM_H_

#ifdef __cplusplus
extern "C" {
#endif

void esp_restart(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_ESP_SYSTEM_H_ */
