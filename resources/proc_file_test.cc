// The "Name:<blanks>value" lines of /proc status and fdinfo files.
#include "resources/proc_file.h"

#include <doctest/doctest.h>

namespace mig::resources {
namespace {

TEST_CASE("fields are found by their whole name, blanks after the colon skipped") {
  const char* text = "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nsettime flags: 01\n";
  std::string_view v;
  REQUIRE(field(text, "flags", v));
  CHECK(v == "02004002");
  REQUIRE(field(text, "settime flags", v));
  CHECK(v == "01");
  CHECK_FALSE(field(text, "settime", v));
  CHECK_FALSE(field(text, "mnt", v));
  CHECK_FALSE(field(text, "ino", v));
}

TEST_CASE("a missing field reads as empty for the number parsers") {
  CHECK(fieldOr("Name:\tcat\nUmask:\t0022\n", "Umask") == "0022");
  CHECK(fieldOr("Name:\tcat\n", "Umask") == "");
}

}  // namespace
}  // namespace mig::resources
