/* gen_data: writes SIZE bytes of deterministic data to PATH, as input for
 * the real programs of the feature suite (sha256sum, bzip2). "text" is lines
 * of words drawn from a fixed vocabulary (compresses about 3:1 with bzip2);
 * "binary" is pseudo-random bytes. The same arguments always give the same
 * file.
 *
 * usage: gen_data PATH SIZE [text|binary]   (SIZE like 300M; default text)
 */
#include "feature.h"

#include <fcntl.h>

enum { BUF = 1 << 20, WORDS = 4096 };

int main(int argc, char **argv)
{
  CHECK(argc == 3 || argc == 4, "usage: gen_data PATH SIZE [text|binary]");
  uint64_t size = parse_size(argv[2]);
  int text = argc < 4 || strcmp(argv[3], "text") == 0;
  CHECK(text || strcmp(argv[3], "binary") == 0, "mode must be text or binary");
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0, "create %s: %s", argv[1], strerror(errno));

  static char words[WORDS][12];
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < WORDS; i++) {
    int len = 2 + (int)(rng_next(&rng) % 9);
    for (int k = 0; k < len; k++)
      words[i][k] = (char)('a' + rng_next(&rng) % 26);
  }

  static char buf[BUF + 64];
  uint64_t done = 0;
  int col = 0;
  while (done < size) {
    size_t n = 0;
    if (text) {
      while (n < BUF) {
        const char *w = words[rng_next(&rng) % WORDS];
        size_t len = strlen(w);
        memcpy(buf + n, w, len);
        n += len;
        buf[n++] = ++col % 12 == 0 ? '\n' : ' ';
      }
    } else {
      for (; n < BUF; n += 8) {
        uint64_t v = rng_next(&rng);
        memcpy(buf + n, &v, 8);
      }
    }
    if (n > size - done)
      n = (size_t)(size - done);
    write_all(fd, buf, n);
    done += n;
  }
  CHECK(close(fd) == 0, "close %s: %s", argv[1], strerror(errno));
  return 0;
}
