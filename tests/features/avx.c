/* avx: a loop that keeps all sixteen 256-bit ymm registers and five general
 * purpose registers live for ~100 ms at a time (nearly the whole run), so a
 * checkpoint signal almost surely lands inside it: the values must come back
 * bit-exact, upper halves included. MXCSR (round-toward-zero, FTZ, DAZ) and
 * the x87 control word (round-down) are set at the start and must survive
 * too; a float and a long double division whose result bits depend on them
 * are printed. Exits 77 (skip) on a CPU without AVX2.
 *
 * usage: avx [STEPS [ITERATIONS_PER_STEP]]   (default 25 steps, 20000000)
 */
#include "feature.h"

#include <xmmintrin.h>

enum { MXCSR_WANT = 0x1f80 | 0x6000 | 0x8000 | 0x0040 };  /* masks, RZ, FTZ, DAZ */
enum { X87_CW_WANT = 0x077f };                             /* default, round down */

static uint32_t state[16][8] __attribute__((aligned(32)));
static uint64_t gpr[4];

/* Runs iters rounds of a mixing function over ymm0-ymm15 and four GPRs.
 * Only register operands inside the loop: nothing is spilled to memory. */
static void avx_block(uint64_t iters)
{
  uint64_t a = gpr[0], b = gpr[1], c = gpr[2], d = gpr[3];
  __asm__ volatile(
      "vmovdqa 0(%[s]), %%ymm0\n\t"
      "vmovdqa 32(%[s]), %%ymm1\n\t"
      "vmovdqa 64(%[s]), %%ymm2\n\t"
      "vmovdqa 96(%[s]), %%ymm3\n\t"
      "vmovdqa 128(%[s]), %%ymm4\n\t"
      "vmovdqa 160(%[s]), %%ymm5\n\t"
      "vmovdqa 192(%[s]), %%ymm6\n\t"
      "vmovdqa 224(%[s]), %%ymm7\n\t"
      "vmovdqa 256(%[s]), %%ymm8\n\t"
      "vmovdqa 288(%[s]), %%ymm9\n\t"
      "vmovdqa 320(%[s]), %%ymm10\n\t"
      "vmovdqa 352(%[s]), %%ymm11\n\t"
      "vmovdqa 384(%[s]), %%ymm12\n\t"
      "vmovdqa 416(%[s]), %%ymm13\n\t"
      "vmovdqa 448(%[s]), %%ymm14\n\t"
      "vmovdqa 480(%[s]), %%ymm15\n\t"
      "1:\n\t"
      "vpaddd %%ymm15, %%ymm0, %%ymm0\n\t"
      "vpxor %%ymm0, %%ymm1, %%ymm1\n\t"
      "vpaddd %%ymm1, %%ymm2, %%ymm2\n\t"
      "vpshufd $0x93, %%ymm3, %%ymm3\n\t"
      "vpxor %%ymm2, %%ymm3, %%ymm3\n\t"
      "vpaddd %%ymm3, %%ymm4, %%ymm4\n\t"
      "vpxor %%ymm4, %%ymm5, %%ymm5\n\t"
      "vpermq $0x39, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm5, %%ymm6, %%ymm6\n\t"
      "vpxor %%ymm6, %%ymm7, %%ymm7\n\t"
      "vpaddd %%ymm7, %%ymm8, %%ymm8\n\t"
      "vpshufd $0x4e, %%ymm9, %%ymm9\n\t"
      "vpxor %%ymm8, %%ymm9, %%ymm9\n\t"
      "vpaddd %%ymm9, %%ymm10, %%ymm10\n\t"
      "vpxor %%ymm10, %%ymm11, %%ymm11\n\t"
      "vpermq $0x93, %%ymm12, %%ymm12\n\t"
      "vpaddd %%ymm11, %%ymm12, %%ymm12\n\t"
      "vpxor %%ymm12, %%ymm13, %%ymm13\n\t"
      "vpaddd %%ymm13, %%ymm14, %%ymm14\n\t"
      "vpxor %%ymm14, %%ymm15, %%ymm15\n\t"
      "add %[b], %[a]\n\t"
      "xor %[a], %[c]\n\t"
      "rol $13, %[c]\n\t"
      "add %[n], %[d]\n\t"
      "xor %[c], %[b]\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vmovdqa %%ymm0, 0(%[s])\n\t"
      "vmovdqa %%ymm1, 32(%[s])\n\t"
      "vmovdqa %%ymm2, 64(%[s])\n\t"
      "vmovdqa %%ymm3, 96(%[s])\n\t"
      "vmovdqa %%ymm4, 128(%[s])\n\t"
      "vmovdqa %%ymm5, 160(%[s])\n\t"
      "vmovdqa %%ymm6, 192(%[s])\n\t"
      "vmovdqa %%ymm7, 224(%[s])\n\t"
      "vmovdqa %%ymm8, 256(%[s])\n\t"
      "vmovdqa %%ymm9, 288(%[s])\n\t"
      "vmovdqa %%ymm10, 320(%[s])\n\t"
      "vmovdqa %%ymm11, 352(%[s])\n\t"
      "vmovdqa %%ymm12, 384(%[s])\n\t"
      "vmovdqa %%ymm13, 416(%[s])\n\t"
      "vmovdqa %%ymm14, 448(%[s])\n\t"
      "vmovdqa %%ymm15, 480(%[s])\n\t"
      "vzeroupper\n\t"
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [d] "+r"(d), [n] "+r"(iters)
      : [s] "r"(state)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
  gpr[0] = a, gpr[1] = b, gpr[2] = c, gpr[3] = d;
}

static unsigned short x87_cw(void)
{
  unsigned short cw;
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  return cw;
}

static void check_fp_control(const char *when)
{
  CHECK(_mm_getcsr() == MXCSR_WANT, "%s: MXCSR is %#x, want %#x", when, _mm_getcsr(), MXCSR_WANT);
  CHECK(x87_cw() == X87_CW_WANT, "%s: x87 control word is %#x, want %#x", when, x87_cw(), X87_CW_WANT);
}

int main(int argc, char **argv)
{
  int steps = argc > 1 ? parse_int(argv[1]) : 25;
  uint64_t iters = argc > 2 ? (uint64_t)parse_int(argv[2]) : 20000000;

  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) {
    fprintf(stderr, "SKIP: this CPU has no AVX2\n");
    return 77;
  }
  for (int r = 0; r < 16; r++)
    for (int l = 0; l < 8; l++)
      state[r][l] = (uint32_t)mix64((uint64_t)r * 8 + l);
  for (int i = 0; i < 4; i++)
    gpr[i] = mix64(100 + i);

  _mm_setcsr(MXCSR_WANT);
  unsigned short cw = X87_CW_WANT;
  __asm__ volatile("fldcw %0" : : "m"(cw));
  check_fp_control("start");

  printf("avx: %d steps of %llu iterations\n", steps, (unsigned long long)iters);
  for (int s = 1; s <= steps; s++) {
    avx_block(iters);
    check_fp_control("step");
    uint64_t h = fnv1a(FNV_INIT, state, sizeof state);
    printf("step %d state %016llx gpr %016llx\n", s, (unsigned long long)h,
           (unsigned long long)(gpr[0] ^ gpr[1] ^ gpr[2] ^ gpr[3]));
    feature_step(s);
  }

  check_fp_control("end");
  volatile float f1 = 1.0f, f3 = 3.0f;
  float q = f1 / f3;
  volatile long double l1 = 1.0L, l3 = 3.0L;
  long double lq = l1 / l3;
  uint32_t qbits;
  uint64_t lbits;
  memcpy(&qbits, &q, sizeof qbits);
  memcpy(&lbits, &lq, sizeof lbits);  /* the 64-bit mantissa */
  printf("1/3 float bits %08x\n", qbits);
  printf("1/3 long double mantissa %016llx\n", (unsigned long long)lbits);
  printf("final state %016llx\n", (unsigned long long)fnv1a(FNV_INIT, state, sizeof state));
  printf("PASS\n");
  return 0;
}
