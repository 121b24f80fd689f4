/* Entry point and stack-switching helpers of the freestanding restorer (x86_64).
 * Everything here is position independent: the restorer may run from a copy of
 * itself placed anywhere in the address space. */

	.text

/* The kernel enters with %rsp at argc, followed by argv[], NULL, envp[], NULL, auxv.
 * No libc: hand the initial stack pointer to mig_restore_start, which never returns. */
	.globl	_start
	.hidden	_start
	.type	_start, @function
_start:
	xorl	%ebp, %ebp
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	mig_restore_start
	ud2
	.size	_start, .-_start

/* void mig_switch_stack(uint64_t stackTop, void (*fn)(void*), void* arg) */
	.globl	mig_switch_stack
	.hidden	mig_switch_stack
	.type	mig_switch_stack, @function
mig_switch_stack:
	andq	$-16, %rdi
	movq	%rdi, %rsp
	movq	%rdx, %rdi
	xorl	%ebp, %ebp
	call	*%rsi
	ud2
	.size	mig_switch_stack, .-mig_switch_stack

/* long mig_clone(uint64_t flags, uint64_t stackTop, uint64_t parentTid, uint64_t childTid,
 *                uint64_t tls, void (*fn)(void*), void* arg)
 * rdi flags, rsi stackTop, rdx parentTid, rcx childTid, r8 tls, r9 fn, 8(%rsp) arg.
 * fn and arg are stored on the child's stack before the call, so the child finds them
 * without touching the parent's stack. */
	.globl	mig_clone
	.hidden	mig_clone
	.type	mig_clone, @function
mig_clone:
	movq	8(%rsp), %rax
	andq	$-16, %rsi
	subq	$16, %rsi
	movq	%r9, 0(%rsi)
	movq	%rax, 8(%rsi)
	movq	%rcx, %r10
	movl	$56, %eax		/* __NR_clone: (flags, newsp, parent_tid, child_tid, tls) */
	syscall
	testq	%rax, %rax
	jnz	1f
	/* Child: %rsp = stackTop - 16, 16-byte aligned. */
	popq	%rax			/* fn */
	popq	%rdi			/* arg */
	xorl	%ebp, %ebp
	call	*%rax
	ud2
1:	ret
	.size	mig_clone, .-mig_clone

/* void mig_resume(uint64_t ucontext, uint64_t unmapAddr, uint64_t unmapLen, uint32_t* onStacks)
 * Uses no memory of its own once %rsp points at the saved frame: the stack it ran on
 * may be unmapped (here, or by another thread once onStacks is decremented). All
 * signals are blocked in the restorer, so nothing is pushed on a stack meanwhile. */
	.globl	mig_resume
	.hidden	mig_resume
	.type	mig_resume, @function
mig_resume:
	movq	%rdi, %rsp
	leaq	.Lsigreturn(%rip), %r13	/* after the shared tail: rt_sigreturn with %rsp there */
	jmp	.Lleave
	.size	mig_resume, .-mig_resume

/* void mig_resume_call(uint64_t ucontext, uint64_t unmapAddr, uint64_t unmapLen,
 *                      uint32_t* onStacks, uint64_t entry)
 * Like mig_resume, but instead of rt_sigreturn calls entry(ucontext) (the shim's
 * mig_resumed_thread, which ends in that rt_sigreturn) on the thread's own stack,
 * 512 bytes below the frame, with a zero return address: it must not return. */
	.globl	mig_resume_call
	.hidden	mig_resume_call
	.type	mig_resume_call, @function
mig_resume_call:
	movq	%r8, %r13		/* entry */
	leaq	-512(%rdi), %rsp
	andq	$-16, %rsp
	subq	$8, %rsp		/* as after a call: %rsp + 8 is 16-byte aligned */
	movq	$0, (%rsp)		/* no return address */
/* The tail both share: %rdi = ucontext, %r13 = where to go with %rdi = ucontext.
 * Unmaps [unmapAddr, +unmapLen) unless onStacks is set and other threads are still on
 * the stacks it names (its decrement did not reach 0), then jumps. Nobody waits for
 * this thread to get here: the main thread may already run the application. */
.Lleave:
	movq	%rdi, %r12		/* ucontext */
	testq	%rcx, %rcx
	jz	1f
	movl	$-1, %eax
	lock xaddl %eax, (%rcx)
	cmpl	$1, %eax		/* it was 1: this thread left last */
	jne	2f
1:	testq	%rdx, %rdx
	jz	2f
	movq	%rsi, %rdi
	movq	%rdx, %rsi
	movl	$11, %eax		/* __NR_munmap */
	syscall
2:	movq	%r12, %rdi
	xorl	%ebp, %ebp
	jmp	*%r13
.Lsigreturn:
	movl	$15, %eax		/* __NR_rt_sigreturn */
	syscall
	ud2
	.size	mig_resume_call, .-mig_resume_call

	.section .note.GNU-stack,"",@progbits
