// mig-image-rewrite: copies an image section by section through the streaming
// reader and writer, optionally changing the header, to make "foreign" images for
// tests (another CPU, another architecture, no recorded owner as an older mig made).
//   mig-image-rewrite IN OUT [--add-xcr0 HEX] [--arch NAME] [--no-owner]
#include "image/byte_io.h"
#include "image/stream_reader.h"
#include "image/writer.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <kj/exception.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <fcntl.h>
#include <unistd.h>

using namespace mig::image;

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: mig-image-rewrite IN OUT [--add-xcr0 HEX] [--arch NAME] [--no-owner]\n");
    return 2;
  }
  uint64_t addXcr0 = 0;
  const char* arch = nullptr;
  bool noOwner = false;
  for (int i = 3; i < argc; ++i) {
    if (strcmp(argv[i], "--no-owner") == 0) noOwner = true;
    else if (i + 1 < argc && strcmp(argv[i], "--add-xcr0") == 0) addXcr0 = strtoull(argv[++i], nullptr, 16);
    else if (i + 1 < argc && strcmp(argv[i], "--arch") == 0) arch = argv[++i];
  }
  try {
    int in = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (in < 0) throw std::runtime_error("cannot open input");
    FdSource src(in, "input image");
    StreamReader r(src);
    capnp::MallocMessageBuilder header;
    header.setRoot(r.header());
    auto h = header.getRoot<schema::Header>();
    h.getCpu().setXcr0(h.getCpu().getXcr0() | addXcr0);
    if (arch != nullptr) h.setArch(arch);
    if (noOwner) {
      h.setOwnerKnown(false);
      h.setOwnerUid(0);
      h.setOwnerGid(0);
      h.disownOwnerGroups();
    }
    AtomicFile out(argv[2]);
    ImageWriter w(out.sink(), header);
    auto buf = kj::heapArray<kj::byte>(1 << 20);
    while (const SectionInfo* s = r.next()) {
      capnp::MallocMessageBuilder meta;
      meta.getRoot<capnp::AnyPointer>().set(r.meta<capnp::AnyPointer>());
      w.beginData(static_cast<SectionType>(s->type), meta, s->dataLen);
      size_t n;
      while ((n = r.readData(buf.begin(), buf.size())) > 0) w.data(buf.begin(), n);
      w.endData();
    }
    w.finish();
    out.commit();
  } catch (const kj::Exception& e) {
    fprintf(stderr, "mig-image-rewrite: %s\n", e.getDescription().cStr());
    return 1;
  } catch (const std::exception& e) {
    fprintf(stderr, "mig-image-rewrite: %s\n", e.what());
    return 1;
  }
  return 0;
}
