/*
 * tether/version.h: the library version, as macros for code compiled
 * against this header and as a function for code that links against a
 * build which may differ from the header it was compiled with.
 */
#ifndef TETHER_VERSION_H
#define TETHER_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_VERSION_MAJOR  0
#define TETHER_VERSION_MINOR  1
#define TETHER_VERSION_PATCH  0
#define TETHER_VERSION_STRING "0.1.0"

/* Returns the version string of the linked library, e.g. "0.1.0". */
const char *tether_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_VERSION_H */
