// The spool: the directory (tmpfs, normally) where incoming images are written and
// kept while their job runs here (the restored job maps its memory from its image).
// Its files are named job-ID.img (the image) and job-ID.log (what the restore said),
// and on a post-copy hop's source host job-ID.pages (the sender's copy, spooled_pages.h);
// shadowd deletes a job's files when the job leaves or ends, when its transfer fails,
// and, at start-up, those a crashed shadowd left that no process uses.
#pragma once

#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::shadow {

kj::String spoolImagePath(kj::StringPtr dir, uint64_t jobId);
kj::String spoolLogPath(kj::StringPtr dir, uint64_t jobId);

// True for the names shadowd gives spool files, "job-" digits ".img", ".log" or ".pages", and
// nothing else (other files in the directory are not ours to delete).
bool isSpoolFileName(kj::StringPtr name);

// Deletes the spool files in `dir` that no process maps or holds open (a job restored
// from its image maps it); returns the names deleted.
kj::Vector<kj::String> cleanSpool(kj::StringPtr dir);

}  // namespace mig::shadow
