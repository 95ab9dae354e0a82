/* What the firmware's main (td_main.c) needs from an engine: one call that sets
 * the model up and gives the protocol core its buffers and model callbacks.
 * td_c_runner.c implements it for the C engine, td_tflm_runner.cc for
 * TensorFlow Lite Micro. */
#ifndef TD_RUNNER_H_
#define TD_RUNNER_H_

#include "td_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest setup error, with its NUL. tinydeploy keeps room for it in the
 * info line (SETUP_ERROR_BYTES in tinydeploy/codegen/engines.py). */
#define TD_SETUP_ERROR_BYTES 192

/* Sets the model up: fills the platform's invoke, info and profile callbacks
 * (profile NULL when the build has no per-layer profile) and io's sizes.
 * Returns NULL when the model is ready, with io's buffers set; else why it is
 * not, and io's buffers stay NULL. */
const char *td_runner_setup(td_platform *platform, td_model_io *io);

#ifdef __cplusplus
}
#endif

#endif /* TD_RUNNER_H_ */
