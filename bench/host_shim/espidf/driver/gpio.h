/* Host stand-in for the ESP-IDF GPIO calls the duty-cycled firmware makes (its marker pin):
 * each is recorded (host_uart.c's td_shim_record), no pin is driven. */
#ifndef TD_SHIM_DRIVER_GPIO_H_
#define TD_SHIM_DRIVER_GPIO_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int gpio_num_t;
typedef enum { GPIO_MODE_INPUT = 1, GPIO_MODE_OUTPUT = 2 } gpio_mode_t;

int gpio_reset_pin(gpio_num_t gpio_num);
int gpio_set_direction(gpio_num_t gpio_num, gpio_mode_t mode);
int gpio_set_level(gpio_num_t gpio_num, uint32_t level);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_DRIVER_GPIO_H_ */
