"""Denormals off for the duration of a kernel call (x86 MXCSR flush-to-zero and denormals-are-zero).

Measured on the reference machine: the same LSTM worker ran 2.3x slower in a
fresh thread than in the main thread; a fresh thread starts with the default
MXCSR (denormal arithmetic on, handled by slow microcode assists), the main
thread had flush-to-zero set. The workers now set FTZ/DAZ themselves and put
the caller's MXCSR back when they finish, so every thread computes the same
way: bit-identical results whatever runs where. Values below 1.2e-38 (float32)
become 0, far below the 1e-5 parity budget. On other architectures these are
no-ops.
"""

from __future__ import annotations

import llvmlite.binding as llb
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_X86 = llb.get_default_triple().startswith(("x86_64", "i386", "i686"))
_FTZ_DAZ = 0x8040


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name=name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def flush_denormals(typingctx):
    """Set FTZ and DAZ in this thread's MXCSR; return the previous MXCSR (0 where not x86)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not _X86:
            return ir.Constant(ir.IntType(64), 0)
        slot = builder.alloca(i32)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, _FTZ_DAZ)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return builder.zext(old, ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def restore_fpenv(typingctx, old):
    """Put back the MXCSR that `flush_denormals` returned."""

    def codegen(context, builder, signature, args):
        if _X86:
            i32 = ir.IntType(32)
            slot = builder.alloca(i32)
            builder.store(builder.trunc(args[0], i32), slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.int64), codegen
