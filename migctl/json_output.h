// `--json`: a command's result as one line of JSON on stdout, encoded by
// capnp::JsonCodec from its struct in migctl/output.capnp (field names documented
// in docs/json.md).
#pragma once

#include "migctl/output.capnp.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <cstdio>

namespace mig::migctl {

template <typename Reader>
void printJson(Reader r) {
  capnp::JsonCodec codec;
  auto text = codec.encode(r);
  printf("%s\n", text.cStr());
  fflush(stdout);
}

}  // namespace mig::migctl
