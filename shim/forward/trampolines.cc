// See trampolines.h. Top-level assembly in a C++ file, so the shim needs no
// assembler language in its build.
#include "shim/forward/trampolines.h"

asm(R"(
	.text

	.globl	mig_fwd_restorer
	.hidden	mig_fwd_restorer
	.type	mig_fwd_restorer, @function
	/* Entered by the handler's `ret`: %rsp points at the frame's ucontext. */
mig_fwd_restorer:
	movl	$15, %eax		/* __NR_rt_sigreturn */
	syscall
	ud2
	.size	mig_fwd_restorer, .-mig_fwd_restorer

	.globl	mig_fwd_sigreturn_at
	.hidden	mig_fwd_sigreturn_at
	.type	mig_fwd_sigreturn_at, @function
mig_fwd_sigreturn_at:
	movq	%rdi, %rsp
	movl	$15, %eax		/* __NR_rt_sigreturn */
	syscall
	ud2
	.size	mig_fwd_sigreturn_at, .-mig_fwd_sigreturn_at

	.globl	mig_fwd_clone
	.hidden	mig_fwd_clone
	.type	mig_fwd_clone, @function
	/* rdi nr, rsi a0, rdx a1, rcx a2, r8 a3, r9 a4, 8(%rsp) childFrame, 16(%rsp) childSetup.
	 * The child keeps only what is in registers: the parent's stack may be gone. */
mig_fwd_clone:
	pushq	%r12
	pushq	%r13
	movq	24(%rsp), %r12		/* childFrame */
	movq	32(%rsp), %r13		/* childSetup */
	movq	%rdi, %rax
	movq	%rsi, %rdi
	movq	%rdx, %rsi
	movq	%rcx, %rdx
	movq	%r8, %r10
	movq	%r9, %r8
	syscall
	testq	%rax, %rax
	jz	1f
	popq	%r13
	popq	%r12
	ret
1:	xorl	%ebp, %ebp
	testq	%r13, %r13
	jz	2f
	leaq	-512(%r12), %rsp
	andq	$-16, %rsp
	call	*%r13
2:	movq	%r12, %rsp
	movl	$15, %eax		/* __NR_rt_sigreturn */
	syscall
	ud2
	.size	mig_fwd_clone, .-mig_fwd_clone
)");
