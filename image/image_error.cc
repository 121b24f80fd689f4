// See image_error.h.
#include "image/image_error.h"

#include "image/format.h"

namespace mig::image {

void fail(kj::String message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(message)));
}

kj::String describeSection(uint32_t index, uint16_t type, uint64_t frameOffset) {
  const char* name = sectionTypeName(type);
  if (name == nullptr) {
    return kj::str("section ", index, " (unknown type ", type, ") at byte ", frameOffset);
  }
  return kj::str("section ", index, " (", name, ") at byte ", frameOffset);
}

const char* sectionTypeName(uint16_t type) {
  switch (static_cast<SectionType>(type)) {
    case SectionType::header: return "header";
    case SectionType::memoryMap: return "memory-map";
    case SectionType::pages: return "pages";
    case SectionType::keptPages: return "kept-pages";
    case SectionType::threads: return "threads";
    case SectionType::process: return "process";
    case SectionType::files: return "files";
    case SectionType::tree: return "tree";
    case SectionType::member: return "member";
    case SectionType::parent: return "parent";
    case SectionType::ipc: return "ipc";
    case SectionType::pageSums: return "page-sums";
    case SectionType::postcopyPages: return "postcopy-pages";
    case SectionType::end: return "end";
  }
  return nullptr;
}

}  // namespace mig::image
