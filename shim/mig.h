/* mig.h: what a program run under mig (LD_PRELOAD=libmig.so, or `migctl run`) may
 * ask of mig about itself: checkpoint itself to a file, move itself to another
 * host, and where it runs and where its home is.
 *
 * Nothing to link: each call looks its libmig.so function up at run time
 * (dlsym(RTLD_DEFAULT)), so the same binary runs with and without mig; without
 * it every call returns -1 with errno ENOSYS. C and C++; include it and call.
 *
 *   if (mig_move(MIG_ANYWHERE) == 0) printf("now on %s\n", ...);   // see below
 *
 * Errors: -1 and errno. ENOSYS: not running under mig. EBUSY: another self
 * request of this process is under way. EIO: mig tried and failed (the process
 * goes on where it was, untouched); mig_last_error() says why in one line (the
 * line `migctl` printed). ENOENT: migctl was not found (set MIG_MIGCTL).
 * ERANGE: the buffer is too small. */
#ifndef MIG_H
#define MIG_H

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* mig_move's destination meaning "the least loaded other host that answers". */
#define MIG_ANYWHERE ((const char *)0)

/* Writes a checkpoint image of this process to `path` (as `migctl checkpoint`;
 * an absolute path, or relative to the directory this host sees as current).
 * Returns 0 in the process that goes on after writing it, and 1 when the process
 * continues from that image (`migctl restart`): like fork(), one call returns
 * twice. */
static inline int mig_checkpoint(const char *path) {
  int (*f)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "mig_api_checkpoint");
  if (f == NULL) { errno = ENOSYS; return -1; }
  return f(path);
}

/* Moves this process, live, to `node` (a name from shadowd's nodes file or
 * HOST:PORT; MIG_ANYWHERE: the idlest other host), as `migctl migrate` does:
 * needs shadowd on this host. Returns 0 on the new host; on failure the process
 * is still where it was and gets -1 (EIO). Its home (PID, files, terminal, parent)
 * stays where it was started. */
static inline int mig_move(const char *node) {
  int (*f)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "mig_api_move");
  if (f == NULL) { errno = ENOSYS; return -1; }
  return f(node);
}

/* The host name (uname's nodename) of the host this process runs on now. */
static inline int mig_where(char *buf, size_t len) {
  int (*f)(char *, size_t) = (int (*)(char *, size_t))dlsym(RTLD_DEFAULT, "mig_api_where");
  if (f == NULL) { errno = ENOSYS; return -1; }
  return f(buf, len);
}

/* The host name of this process's home: where it was started, where its PID,
 * files and terminal are. */
static inline int mig_home(char *buf, size_t len) {
  int (*f)(char *, size_t) = (int (*)(char *, size_t))dlsym(RTLD_DEFAULT, "mig_api_home");
  if (f == NULL) { errno = ENOSYS; return -1; }
  return f(buf, len);
}

/* Why the last mig_checkpoint or mig_move of this process failed (EIO), one
 * line; "" when none did. */
static inline int mig_last_error(char *buf, size_t len) {
  int (*f)(char *, size_t) = (int (*)(char *, size_t))dlsym(RTLD_DEFAULT, "mig_api_last_error");
  if (f == NULL) { errno = ENOSYS; return -1; }
  return f(buf, len);
}

#ifdef __cplusplus
}
#endif

#endif /* MIG_H */
