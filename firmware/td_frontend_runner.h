/* The front end between the protocol and the model (td_frontend.h), for models that carry
 * one: the firmware receives the raw window as int16 samples (little-endian, channels
 * interleaved: docs/protocol.md) and every inference runs td_frontend_run() on them into
 * the model's int8 input, then the model. td_main.c calls td_frontend_setup() after the
 * engine's td_runner_setup() when the generated td_board.h defines TD_FRONTEND. */
#ifndef TD_FRONTEND_RUNNER_H_
#define TD_FRONTEND_RUNNER_H_

#include "td_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wraps the engine's callbacks and buffers: io's input becomes the raw window (its size in
 * bytes), the engine's input the front end's output. error: the engine's setup error (NULL
 * when the model is ready), returned as it is (io's input then stays NULL); else NULL, or why
 * the front end does not fit the model. */
const char *td_frontend_setup(td_platform *platform, td_model_io *io, const char *error);

#ifdef __cplusplus
}
#endif

#endif /* TD_FRONTEND_RUNNER_H_ */
