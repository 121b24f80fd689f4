// A process's memory in the image: its memory map (one region per line of
// /proc/PID/maps, with the consistency record of mapped files) and the pages it must
// carry (touched anonymous memory, modified private file pages, shared memory), as
// the PageSource tells them (page_source.h; ProcPageSource reads /proc); and the
// restart's check that mapped files are still the same.
#pragma once

#include "image/file_reader.h"
#include "image/writer.h"
#include "resources/process_capture.h"

namespace mig::resources {

class PageRangeSet;

// `held` (pre-copy): pages the receiver already has, unchanged since; they are listed
// in a keptPages section instead of being sent again. `inImage`, if given, is set to
// the pages the image now stands for (saved or kept): an incremental image's chain.
// `allowSparse`: short runs may go into sparsePages sections (image/format.h); process
// trees' members do not use them yet (their restart-chain tests failed now and then
// with them, not understood yet).
void writeMemory(PageSource& memory, image::ImageWriter& w, CaptureStats& stats,
                 const PageRangeSet* held = nullptr, PageRangeSet* inImage = nullptr, bool allowSparse = true);

// At restart: refuses an image whose code would not be the same (every mapped file
// must still be the file that was mapped), with one line naming the file.
// migrated: the image comes from another host, where each file had that host's inode:
// a file counts as the same if its size and mtime are (a package installs its files
// with the package's mtimes); on the same host the inode must match too.
void checkMappedFiles(image::FileReader& img, bool migrated);

}  // namespace mig::resources
