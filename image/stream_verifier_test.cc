// The push verifier a migration's receiver runs on the image as it arrives: whole
// images pass in pieces of any size; a flipped byte anywhere or a cut stream does not.
#include "image/image_test_util.h"
#include "image/sample_image.h"
#include "image/stream_verifier.h"

#include <algorithm>

namespace mig::image {
namespace {

// Feeds `bytes` in pieces of `piece` bytes; returns the error, "" when none.
std::string feedAll(kj::ArrayPtr<const kj::byte> bytes, size_t piece, bool& complete) {
  StreamVerifier v;
  std::string err;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    for (size_t at = 0; at < bytes.size(); at += piece) v.feed(bytes.begin() + at, std::min(piece, bytes.size() - at));
  })) {
    err = e->getDescription().cStr();
  }
  complete = v.complete();
  return err;
}

TEST_CASE("a whole image passes the stream verifier in pieces of any size") {
  auto img = makeSampleImage();
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
    bool complete = false;
    CHECK(feedAll(img, piece, complete) == "");
    CHECK(complete);
  }
}

TEST_CASE("the stream verifier refuses every flipped byte and sees a cut stream") {
  auto img = makeSampleImage();
  size_t refused = 0, tried = 0;
  for (size_t i = 0; i < img.size(); i += 11) {
    auto bad = kj::heapArray<kj::byte>(img.asPtr());
    bad[i] ^= 0x40;
    bool complete = false;
    std::string err = feedAll(bad, 4096, complete);
    ++tried;
    if (!err.empty() || !complete) ++refused;
  }
  CHECK(refused == tried);
  bool complete = true;
  CHECK(feedAll(img.slice(0, img.size() - 1), 4096, complete) == "");
  CHECK_FALSE(complete);
}

}  // namespace
}  // namespace mig::image
