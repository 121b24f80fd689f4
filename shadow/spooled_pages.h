// A post-copy hop whose sender (migctl send) died after the commit, before its
// destination had every page: the pages are not lost with it. The sender keeps its copy
// of them in a file in this host's spool (page_copy.h); shadowd, seeing the sender end
// without its result, serves them from that file: it hands the destination a page
// source of its own (Node.resumePages, as the sender does after a broken link), again
// whenever no page was asked for a while, until the destination has them all
// (PageSource.finished, or resumePages says so), refuses (the job ended there), or
// asks for nothing for the transfer timeout. The file is deleted then.
#pragma once

#include "shadow/daemon.h"

namespace mig::shadow {

// <spool>/job-ID.pages: where a post-copy sender keeps its copy (migctl send --pages-file).
kj::String spoolPagesPath(kj::StringPtr dir, uint64_t jobId);

// Serves job `jobId`'s pages to `to` from the copy its dead sender left; logs one line
// and does nothing if there is none (the sender died before its copy was complete).
void serveSpooledPages(Daemon& d, uint64_t jobId, kj::ArrayPtr<const kj::byte> token, kj::StringPtr to);

}  // namespace mig::shadow
