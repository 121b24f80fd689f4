// See proc_file.h.
#include "image/proc_file.h"

#include "image/image_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mig::image {

std::string readProcFile(pid_t pid, const std::string& what) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + what;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(kj::str("cannot open ", path.c_str(), ": ", strerror(errno)));
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return s;
}

}  // namespace mig::image
