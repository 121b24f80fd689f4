// The list of fd kinds (one per FileDescriptor.Kind value) and the two look-ups the
// walks need: which kind an fd of a live process is, and which kind a record is.
#pragma once

#include "resources/fd_kind.h"

namespace mig::resources {

// Every kind, in the order detection asks them (fd_kinds.cc).
kj::ArrayPtr<const FdKind* const> fdKinds();

// The first kind whose matches() takes the fd (the list ends with a kind that takes all).
const FdKind& detectKind(const FdProbe& probe, const CaptureContext& ctx);

// The kind of a record; throws for a value no kind has (the image reader already
// refuses those, so this is our bug).
const FdKind& kindOf(FdRecord::Kind kind);

}  // namespace mig::resources
