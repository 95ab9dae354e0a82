/* The model slots in the firmware's main (td_main.c, with TD_MODEL_PARTITION): the slot is
 * chosen and checked before the runner sets the model up, then the protocol gains the `model`
 * commands and info% reports the slot. The contract is generated (td_contract.c). */
#ifndef TD_MAIN_SLOTS_H_
#define TD_MAIN_SLOTS_H_

#include <stdint.h>

#include "td_protocol.h"
#include "td_slots.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Boot the slots: NULL when a slot runs, else why none can (printed as the setup error). */
const char *td_main_slots_boot(void);
/* After the runner's setup and td_protocol_init: wrap invoke (the first inference decides a
 * slot on trial) and info (the slot's fields), add the `model` commands, print why a slot was
 * refused at boot. */
void td_main_slots_attach(td_platform *platform, td_protocol *protocol);
/* What attach does without the protocol, for an application that is its own main (a library
 * export): the first inference decides a slot on trial, info reports the slot. */
void td_main_slots_wrap(td_platform *platform);
/* The slots, for td_slots_update_* (an application's own update transport). */
td_slots *td_main_slots(void);
/* The running slot's model, for the runner (NULL when none runs). */
const uint8_t *td_model_slot_data(void);
/* The running slot's C engine constants and their size in *bytes (NULL when it has none). */
const uint8_t *td_model_slot_constants(uint32_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* TD_MAIN_SLOTS_H_ */
