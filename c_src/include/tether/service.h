/*
 * tether/service.h: compatibility header. The service API it used to
 * declare now lives in one header per concept, all included here, so
 * code written against service.h builds unchanged:
 *
 *  tether/function.h     C functions that rpc/erpc call (tether_call_*)
 *  tether/gen_service.h  gen_server services, tether_reply*, tether_from_*
 *  tether/send.h         tether_send, tether_send_name
 *  tether/erlang_call.h  calling Erlang from C (tether_erlang_call*)
 *  tether/workers.h      the worker pool (tether_node_submit, tether_pool_*)
 *  tether/plugin.h       the plugin entry point
 *
 * New code includes tether/tether.h or the headers it needs.
 */
#ifndef TETHER_SERVICE_H
#define TETHER_SERVICE_H

#include "tether/erlang_call.h"
#include "tether/function.h"
#include "tether/gen_service.h"
#include "tether/plugin.h"
#include "tether/send.h"
#include "tether/workers.h"

#endif /* TETHER_SERVICE_H */
