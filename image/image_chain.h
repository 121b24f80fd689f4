// Chains of incremental images (`migctl checkpoint PID -o DIR --every SECONDS`): the
// first image of a chain is whole; each later one holds only the pages written since
// the one before (its parent), names the parent in a parent section (its file name in
// the same directory and its identity: header checksum, section count and data bytes)
// and lists in a keptPages section the pages it takes from the parent's chain.
//
// A chain is restarted (and merged by `migctl image merge`) as one whole image made
// from it: every ancestor's pages as pre-copy rounds, oldest first, then the newest
// image's own sections, whose keptPages pick the ancestors' pages they need
// (plan_builder.cc gives a later copy of a page precedence over an earlier one).
#pragma once

#include "image/byte_io.h"
#include "image/file_reader.h"

#include <kj/string.h>

namespace mig::image {

// The parent section a child of `parent` (whose file name is `fileName`) carries.
void describeParent(FileReader& parent, kj::StringPtr fileName, schema::Parent::Builder out);

// The newest image of chain directory `dir` (the highest `ckpt-NNNN.mig`), or
// nullptr when it holds none.
kj::Maybe<kj::String> newestInChain(kj::StringPtr dir);

// Writes `newest` and its chain as one whole image to `out`; returns how many images
// the chain has. Each image of the chain is checked whole first; a missing, corrupt or
// replaced parent fails with one line naming it.
size_t mergeChain(kj::StringPtr newest, ByteSink& out);

// For `migctl restart PATH`, opened (and indexed once): PATH itself when it is a whole
// image; for a chain directory its newest image, and for an incremental image (or a
// directory whose newest is one) the whole image made from its chain, written beside it
// as `.whole-ckpt-NNNN.mig` (a restored process maps its pages from it by name).
kj::Own<FileReader> openWholeImage(kj::StringPtr path);

}  // namespace mig::image
