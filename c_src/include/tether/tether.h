/*
 * tether/tether.h: the public C API of tether, for programs that embed a
 * tether C-node or write services for one.
 *
 * This umbrella header includes one header per public module; nothing
 * from the library's internal layers (dist/, core/) appears here.
 */
#ifndef TETHER_H
#define TETHER_H

#include "tether/error.h"
#include "tether/version.h"

#endif /* TETHER_H */
