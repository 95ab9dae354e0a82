/* Host stand-in: the tick conversion hal_espidf_slots.c uses (a 1 kHz tick). */
#ifndef TD_SHIM_FREERTOS_H_
#define TD_SHIM_FREERTOS_H_

#define pdMS_TO_TICKS(ms) ((TickType_t)(ms))

#endif /* TD_SHIM_FREERTOS_H_ */
