// See image_chain.h.
#include "image/image_chain.h"

#include "image/image_error.h"
#include "image/writer.h"

#include <capnp/any.h>
#include <capnp/message.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::image {
namespace {

constexpr size_t kCopyChunk = 4u << 20;

std::string dirOf(kj::StringPtr path) {
  std::string p(path.cStr());
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string(".") : (slash == 0 ? std::string("/") : p.substr(0, slash));
}

// Opens and checks one image of a chain; `what` says which one for the message.
kj::Own<FileReader> openLink(kj::StringPtr path, kj::StringPtr what) {
  kj::Own<FileReader> img;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    img = kj::heap<FileReader>(path);
    img->verifyAll();
  })) {
    fail(kj::str(what, " ", path, " cannot be used: ", e->getDescription()));
  }
  if (img->isTree()) fail(kj::str(what, " ", path, " holds a process tree; chains are of one process"));
  return img;
}

void copyData(FileReader& img, size_t i, ImageWriter& w, kj::Array<kj::byte>& buf) {
  uint64_t len = img.section(i).dataLen;
  for (uint64_t at = 0; at < len;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len - at, buf.size()));
    img.readData(i, at, buf.begin(), n);
    w.data(buf.begin(), n);
    at += n;
  }
}

}  // namespace

void describeParent(FileReader& parent, kj::StringPtr fileName, schema::Parent::Builder out) {
  size_t last = parent.sectionCount() - 1;
  auto end = parent.meta<schema::End>(last);
  out.setFile(fileName);
  out.setHeaderHash(parent.section(0).metaHash);
  out.setDataBytes(end.getDataBytes());
  out.setSections(end.getSections());
}

kj::Maybe<kj::String> newestInChain(kj::StringPtr dir) {
  DIR* d = opendir(dir.cStr());
  if (d == nullptr) fail(kj::str("cannot read chain directory ", dir, ": ", strerror(errno)));
  KJ_DEFER(closedir(d));
  std::string best;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("ckpt-", 0) == 0 && name.size() > 9 && name.compare(name.size() - 4, 4, ".mig") == 0 &&
        name > best) {
      best = name;
    }
  }
  if (best.empty()) return nullptr;
  return kj::str(dir, "/", best.c_str());
}

size_t mergeChain(kj::StringPtr newest, ByteSink& out) {
  kj::Vector<kj::Own<FileReader>> chain;  // newest first
  chain.add(openLink(newest, "image"));
  for (;;) {
    FileReader& img = *chain.back();
    size_t at = 0;
    KJ_IF_MAYBE(i, img.firstSection(SectionType::parent)) { at = *i; } else { break; }
    auto p = img.meta<schema::Parent>(at);
    auto parentPath = kj::str(dirOf(img.path()).c_str(), "/", p.getFile());
    struct stat st {};
    if (stat(parentPath.cStr(), &st) != 0) {
      fail(kj::str("the parent ", parentPath, " of image ", img.path(), " is missing (", strerror(errno),
                   "); the chain cannot be restarted from ", newest, " (an earlier image of it whose parents are all there can)"));
    }
    auto parent = openLink(parentPath, kj::str("the parent of image ", img.path(), ","));
    auto end = parent->meta<schema::End>(parent->sectionCount() - 1);
    if (parent->section(0).metaHash != p.getHeaderHash() || end.getDataBytes() != p.getDataBytes() ||
        end.getSections() != p.getSections()) {
      fail(kj::str(parentPath, " is not the parent image ", img.path(), " was made after (replaced since); "
                   "the chain cannot be restarted from ", newest));
    }
    if (chain.size() > 100000) fail(kj::str("the chain of ", newest, " does not end"));
    chain.add(kj::mv(parent));
  }

  FileReader& last = *chain[0];
  capnp::MallocMessageBuilder header;
  header.setRoot(last.header());
  ImageWriter w(out, header);
  auto buf = kj::heapArray<kj::byte>(kCopyChunk);
  // The ancestors' pages, oldest first, as pre-copy rounds: used only where the newest
  // image keeps them, a later one over an earlier one.
  uint32_t round = 0;
  for (size_t k = chain.size(); k-- > 1;) {
    FileReader& img = *chain[k];
    ++round;
    for (size_t i = 0; i < img.sectionCount(); ++i) {
      if (img.section(i).type != static_cast<uint16_t>(SectionType::pages)) continue;
      capnp::MallocMessageBuilder m;
      auto pages = m.initRoot<schema::Pages>();
      pages.setRuns(img.meta<schema::Pages>(i).getRuns());
      pages.setPrecopyRound(round);
      w.beginData(SectionType::pages, m, img.section(i).dataLen);
      copyData(img, i, w, buf);
      w.endData();
    }
  }
  for (size_t i = 1; i < last.sectionCount(); ++i) {
    const SectionInfo& info = last.section(i);
    auto type = static_cast<SectionType>(info.type);
    if (type == SectionType::end || type == SectionType::parent) continue;
    capnp::MallocMessageBuilder m;
    m.getRoot<capnp::AnyPointer>().set(last.meta<capnp::AnyPointer>(i));
    if (info.dataLen == 0) {
      w.section(type, m);
    } else {
      w.beginData(type, m, info.dataLen);
      copyData(last, i, w, buf);
      w.endData();
    }
  }
  w.finish();
  return chain.size();
}

kj::Own<FileReader> openWholeImage(kj::StringPtr path) {
  kj::String image = kj::str(path);
  struct stat st {};
  if (stat(path.cStr(), &st) == 0 && S_ISDIR(st.st_mode)) {
    KJ_IF_MAYBE(n, newestInChain(path)) {
      image = kj::mv(*n);
    } else {
      fail(kj::str(path, " is a directory without images (ckpt-NNNN.mig, as `migctl checkpoint --every` writes)"));
    }
  }
  auto img = kj::heap<FileReader>(image);
  if (img->firstSection(SectionType::parent) == nullptr) return img;
  // An incremental image: the whole one, beside the chain (a restored process maps its
  // pages from it, by name: it must stay while the process runs; made anew each time,
  // a running one keeps the file it mapped).
  std::string image_s(image.cStr());
  size_t slash = image_s.rfind('/');
  std::string base = slash == std::string::npos ? image_s : image_s.substr(slash + 1);
  auto whole = kj::str(dirOf(image).c_str(), "/.whole-", base.c_str());
  AtomicFile file(whole);
  mergeChain(image, file.sink());
  file.commit();
  return kj::heap<FileReader>(whole);
}

}  // namespace mig::image
