// rsc/forward_table.cc: the real table, made from rsc/forward_calls.def (see
// forward_table.h). Constant data checked at compile time, so the shim can read it
// from a signal handler and a bad row never reaches a build.
#include "rsc/forward_table.h"

#include "rsc/forward_rows.h"

namespace mig::rsc {
namespace {

using namespace rows;

constexpr Row kRows[] = {
#define MIG_CALL(name, id, ...) withId(CallId::name, __VA_ARGS__),
#include "rsc/forward_calls.def"
};

constexpr uint32_t kCount = sizeof(kRows) / sizeof(kRows[0]);
static_assert(kCount == kCallCount);
static_assert(tableIsSound(kRows, kCount), "forward table row inconsistent");

constexpr Table kTable{kRows, kCount};

}  // namespace

const Table& forwardTable() { return kTable; }

}  // namespace mig::rsc
