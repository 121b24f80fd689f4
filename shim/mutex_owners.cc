// Mutexes held across a checkpoint. glibc records the owner's kernel TID in
// error-checking, recursive, robust and PI mutexes; a restored thread has a new
// TID, so without help it could neither unlock such a mutex nor lock it again
// recursively. Before glibc looks at one, the wrapper rewrites the owner from the
// thread's old TID to its new one. Normal mutexes cost one predictable branch.
#include "shim/real_function.h"
#include "shim/runtime.h"

#include <pthread.h>

using namespace mig::shim;

namespace {

constexpr int kKindTypeMask = 3;      // PTHREAD_MUTEX_KIND_MASK_NP: normal/recursive/errorcheck/adaptive
constexpr int kKindRobust = 16;       // PTHREAD_MUTEX_ROBUST_NORMAL_NP
constexpr int kKindPi = 32;           // PTHREAD_MUTEX_PRIO_INHERIT_NP
constexpr int kFutexTidMask = 0x3fffffff;

void adoptOwner(pthread_mutex_t* m) {
  if (__builtin_expect(!g_runtime.restored, 1)) return;
  int kind = m->__data.__kind;
  bool ownerKind = (kind & kKindTypeMask) == PTHREAD_MUTEX_RECURSIVE_NP ||
                   (kind & kKindTypeMask) == PTHREAD_MUTEX_ERRORCHECK_NP || (kind & (kKindRobust | kKindPi));
  if (!ownerKind) return;
  pid_t old = m->__data.__owner;
  bool mine = old != 0 && old == t_vtid;
  for (int k = 0; k < kFormerTids; ++k) mine = mine || (old != 0 && old == t_formerTids[k]);
  if (!mine) return;
  pid_t now = realTid();
  if (now == old) return;
  m->__data.__owner = now;
  if (kind & (kKindRobust | kKindPi)) {
    // The futex word carries the owner's TID too; the kernel reads it when the
    // owner dies (robust) or for priority inheritance.
    int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
    while ((word & kFutexTidMask) == old &&
           !__atomic_compare_exchange_n(&m->__data.__lock, &word, (word & ~kFutexTidMask) | now, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
    }
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int pthread_mutex_lock(pthread_mutex_t* m) {
  adoptOwner(m);
  return MIG_REAL(pthread_mutex_lock)(m);
}

__attribute__((visibility("default"))) int pthread_mutex_trylock(pthread_mutex_t* m) {
  adoptOwner(m);
  return MIG_REAL(pthread_mutex_trylock)(m);
}

__attribute__((visibility("default"))) int pthread_mutex_timedlock(pthread_mutex_t* m, const struct timespec* t) {
  adoptOwner(m);
  return MIG_REAL(pthread_mutex_timedlock)(m, t);
}

__attribute__((visibility("default"))) int pthread_mutex_unlock(pthread_mutex_t* m) {
  adoptOwner(m);
  return MIG_REAL(pthread_mutex_unlock)(m);
}

}  // extern "C"
