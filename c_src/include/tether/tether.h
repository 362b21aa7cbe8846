/*
 * tether/tether.h: the public C API of tether, for programs that embed a
 * tether C-node or write services for one.
 *
 * This umbrella header includes one header per public module; nothing
 * from the library's internal layers (dist/, core/) appears here.
 *
 *  tether/error.h        TETHER_E* codes, tether_strerror()
 *  tether/version.h      tether_version()
 *  tether/node.h         create, start, run, stop a node; posts, timers, logs
 *  tether/function.h     functions (M:F/A for rpc/erpc), tether_call_*
 *  tether/gen_service.h  services (gen_server call/cast), tether_reply*
 *  tether/send.h         sending messages to pids and registered names
 *  tether/erlang_call.h  calling Erlang functions from C
 *  tether/workers.h      the worker pool
 *  tether/plugin.h       the plugin entry point
 *  tether/service.h      all six above (compatibility)
 *  tether/term.h         term checks, canonical form, printing (over ei)
 *  tether/cli.h          the tether_cnode command line, for embedders
 *  tether/cluster.h      the node as a member of a tether cluster (`tether')
 *  tether/messaging.h    messages with ack, channels and partition keys to
 *                        processes on other members; up/down callbacks
 */
#ifndef TETHER_H
#define TETHER_H

#include "tether/cli.h"
#include "tether/cluster.h"
#include "tether/erlang_call.h"
#include "tether/error.h"
#include "tether/function.h"
#include "tether/gen_service.h"
#include "tether/messaging.h"
#include "tether/node.h"
#include "tether/plugin.h"
#include "tether/send.h"
#include "tether/service.h"
#include "tether/term.h"
#include "tether/version.h"
#include "tether/workers.h"

#endif /* TETHER_H */
