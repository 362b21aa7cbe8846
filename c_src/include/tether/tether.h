/*
 * tether/tether.h: the public C API of tether, for programs that embed a
 * tether C-node or write services for one.
 *
 * This umbrella header includes one header per public module; nothing
 * from the library's internal layers (dist/, core/) appears here.
 *
 *  tether/error.h    TETHER_E* codes, tether_strerror()
 *  tether/version.h  tether_version()
 *  tether/node.h     create, start, run, stop a node; posts, timers, logs
 *  tether/service.h  functions (M:F/A for rpc/erpc), services
 *                    (gen_server call/cast), sending, calling Erlang,
 *                    the worker pool, the plugin entry point
 *  tether/term.h     term checks, canonical form, printing (over ei)
 *  tether/cli.h      the tether_cnode command line, for embedders
 *  tether/cluster.h  the node as a member of a tether cluster (`tether')
 */
#ifndef TETHER_H
#define TETHER_H

#include "tether/cli.h"
#include "tether/cluster.h"
#include "tether/error.h"
#include "tether/node.h"
#include "tether/service.h"
#include "tether/term.h"
#include "tether/version.h"

#endif /* TETHER_H */
