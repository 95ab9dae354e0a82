/* Host stand-in: the TFLM Arduino library's umbrella header includes Wire.h for its board
 * peripherals, which the firmware does not use. */
#ifndef TD_SHIM_WIRE_H_
#define TD_SHIM_WIRE_H_
#endif
