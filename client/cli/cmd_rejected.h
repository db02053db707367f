/* `syncrelay rejected`: the changes the relay refused for good; and the clock-skew warning. */
#ifndef SR_CMD_REJECTED_H
#define SR_CMD_REJECTED_H

#include "syncrelay.h"
#include "syncrelay_codec.h"

/* rejected [list] | rejected retry ID|all | rejected drop ID|all. Returns the exit status. */
int cmd_rejected(sr_client *c, int argc, char **argv, int json);
/* Warns on stderr when the device clock runs past the relay's skew limit (changes then wait
 * in the outbox) and when refused changes are set aside. */
void cli_sync_warnings(sr_client *c);

#endif
