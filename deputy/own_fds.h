// Where the deputy keeps its own fds (event loop, shadowd connection, copies of watched
// fds) so that the job's fd numbers never land on one. The job's forwarded calls make
// fds at home under the numbers the job chose where it runs (dup3 onto them); those are
// below the job's fd limit and below forward::kMaxFds, the numbers a migrated job can
// have at home.
//
// The deputy raises its soft limit to the hard one. With room above the job's numbers
// (the usual case) its fds go there and never meet the job's. A job that lowered its
// hard limit too (memcached -c 1024 sets both to 1024) leaves no such room: then the
// deputy's fds go from the top of the table down while the job's grow from the bottom
// (the lowest free number, as the kernel gives them), and if they ever meet, the job's
// call is refused as the kernel refuses a full table (dup2/dup3 onto a deputy fd:
// EMFILE; close of one: EBADF, the job never had it).
#pragma once

#include <cstdint>

namespace mig::deputy {

// Decides the layout from the limits the deputy inherited from the job and raises the
// soft limit; the numbers below lowestOwn() are the job's from then on.
void planFdSpace();

// The lowest number an fd of the deputy's is placed at when it is made (placeholders
// hold the numbers below while the event loop and the connection are made).
int lowestOwn();

// Moves `fd` (a new fd of the deputy's, close-on-exec) to the deputy's space and marks
// it; returns its new number, or -1 with errno (the fd is closed then).
int placeOwn(int fd);

// Marks every fd open now that is not in `before` (the job's, sorted) as the deputy's.
void markOpenFdsOwn(const int* before, int count);

// `fd` is the deputy's (marked), or no longer (about to be closed).
void markOwn(int fd, bool own);
bool isOwn(int64_t fd);

}  // namespace mig::deputy
