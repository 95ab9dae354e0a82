/* Reset entry for the bare-metal RV32 firmware (QEMU virt, -bios none):
 * set the stack and the thread pointer, clear .tbss and .bss, call main.
 * Symbols come from qemu_virt.ld. tp points at the one thread-local block
 * (RISC-V TLS: local-exec offsets count from tp), so errno, which picolibc
 * keeps thread-local, is written where the linker placed it. */
  .section .text.start
  .globl _start
_start:
  .option push
  .option norelax
  la gp, __global_pointer$
  .option pop
  la sp, __stack_top
  la tp, __tls_base
  la t0, __bss_start
  la t1, __bss_end
1:
  bgeu t0, t1, 2f
  sw zero, 0(t0)
  addi t0, t0, 4
  j 1b
2:
  call main
3:
  wfi
  j 3b
