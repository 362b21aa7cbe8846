/*
 * cnode/builtins.h: the processes every tether C-node starts.
 *
 * net_kernel  answers {'$gen_call', {From, Tag}, {is_auth, Node}} with
 *             `yes` (net_adm:ping/1 gets pong); the reply goes to the
 *             alias when Tag is [alias | Ref] (OTP 24+), else to From.
 * echo        the test and demo service; protocol (messages it accepts):
 *   {echo, FromPid, Term}     sends Term to FromPid
 *   {spawn, FromPid, Name}    starts another echo process registered as
 *                             Name and replies {spawned, Name, NewPid}
 *                             (or {error, Name, already_registered})
 *   {stop, Reason}            the process exits with Reason
 *   {link, Pid}               links to Pid
 *   {unlink, Pid}             removes the link
 *   {trap_exit, true|false}   sets trap_exit
 *   {get_exits, FromPid}      replies {exits, [{From, Reason}]}: the exit
 *                             signals trapped so far, oldest first
 *   {monitor, FromPid, Target} monitors Target (a pid, a registered name
 *                             or {Name, Node}), replies {monitoring, Ref}
 *                             and later forwards the {'DOWN', Ref, ...}
 *                             message to FromPid
 *   {'$gen_call', From, ping} replies pong (gen_server:call works)
 * Anything else is ignored.
 */
#ifndef TETHER_CNODE_BUILTINS_H
#define TETHER_CNODE_BUILTINS_H

#include "cnode/proc.h"

/* Most trapped exits an echo process keeps (older ones are dropped). */
#define TETHER_ECHO_EXITS_MAX 256
/* Most monitors an echo process holds for {monitor, ...} requests. */
#define TETHER_ECHO_MONITORS_MAX 256

/* Starts net_kernel and echo in procs. Returns 0 or a TETHER_E* code. */
TETHER_MUST_CHECK int tether__builtins_start(tether_procs_t *procs);

/* Starts one echo process, registered as `name` when not NULL. */
TETHER_MUST_CHECK int tether__echo_spawn(tether_procs_t *procs,
                                         const char *name,
                                         tether_proc_t **proc);

#endif /* TETHER_CNODE_BUILTINS_H */
