// Lazy pages: `migctl restart --lazy` starts the job before its memory is read. The
// big private anonymous regions (heap, large mmaps) are left missing and registered
// with a userfaultfd by the restorer (restore/restorer.cc, startLazyPages); a page
// server, a process forked by migctl before it becomes the job, puts each page in
// place from the image file (UFFDIO_COPY) when the job first touches it, and fills
// the rest in the background (from 100 ms after the job's memory was handed over, so
// that a hop's release does not share the CPU with it). A page's data is checked against its section's
// checksum before any page of that section is placed, so the job never runs on
// corrupt data: a bad checksum kills the job with one line saying so. Nor on zeros for
// pages that never came: a guard process holds another reference to the userfaultfd,
// so that the server's death leaves them missing, and kills the job (lazy_pages.cc,
// guardPages).
//
// A pre-copy hop's restart (migctl/restart_command.cc) is lazy the same way without
// --lazy, so that the destination places the rounds' pages after the release, not
// inside the freeze; a later round's run over an earlier one wins (startPageServer).
//
// MIG_LAZY_NO_FILL=1 in migctl restart's environment turns the background fill off
// (pages come only when touched, the server lives as long as the job): for tests that
// need pages still missing, and to see what a job really touches.
//
// The registration catches the kernel's accesses too (system calls that read into or
// write from a missing page wait for it like the job's own accesses do), which needs
// privilege: lazyPagesUnavailable() says when a restart has to be eager instead.
#pragma once

#include "image/file_reader.h"
#include "image/plan_builder.h"

#include <kj/string.h>

#include <sys/types.h>

namespace mig::resources {

// Why this process may not register a userfaultfd whose kernel-mode faults are
// handled (not root and vm.unprivileged_userfaultfd is 0), or nullptr when it may.
kj::Maybe<kj::String> lazyPagesUnavailable();

// Turns the plan's saved pages of large private anonymous regions into kPagesLazy;
// returns the bytes made lazy (0: nothing worth it, the plan is unchanged).
uint64_t markLazyPages(image::RestorePlan& plan);

// Verifies every section now except page data that only lazy pages come from (the
// page server checks those as it first uses them). Throws the image error.
void verifyEagerSections(image::FileReader& img, const image::RestorePlan& plan);

// Forks a page server (a grandchild, so it is never the job's child; in a session of
// its own) that waits for its work, and returns the restart's end of its socket
// (close-on-exec; closing it ends the server). `job` is the PID the restored process
// will have, the restart's own. A hop's restart forks it as it starts, before the job's
// freeze, so that the freeze holds no fork (two forks and the wait for the first: up to
// 30 ms on the loaded test VM); the server takes the job's user and groups when its
// work comes.
int forkPageServer(pid_t job);

// Hands a server forked by forkPageServer the image (open on `imageFd`, at `path`),
// which it indexes meanwhile (its own reader: the restart's fd numbers are the job's by
// the time the server reads).
void sendPageServerImage(int server, int imageFd, kj::StringPtr path);

// Gives the page server its runs and returns the end of its socket that the restorer
// sends the userfaultfd on (not close-on-exec), once the server has everything it could
// fail on (so a failure is the restart's, before "ready"). `server` is one forked by
// forkPageServer and handed the image; -1: forked and handed `imageFd` now.
// `job` is the PID the restored process will have, which a corrupt page kills;
// `imageFd` is open on img's file (img's own fd number may hold a job's file by now).
// `net` >= 0: post-copy (network_page_source.h): every lazy page comes from that socket
// (shadowd fetches it from the sender) instead of the image; a request not answered
// within `netTimeoutMs` (or a broken socket) kills the job with one line, never letting
// it run on without its pages. The server says when it needs no more pages.
int startPageServer(image::FileReader& img, int imageFd, const image::RestorePlan& plan, pid_t job, int net = -1,
                    int netTimeoutMs = 30000, int server = -1);

// Returns once the page server of a lazy restart of process `pid` (if any) has put
// every page in place: a capture reads /proc/PID/pagemap, where a page not placed yet
// looks like one never touched, and would leave it out. The server listens on the
// abstract socket "mig-lazy-PID" and hurries (fills in the background even under
// MIG_LAZY_NO_FILL) once someone waits. Throws after `timeoutSeconds`.
void waitForLazyPages(pid_t pid, int timeoutSeconds = 300);

}  // namespace mig::resources
