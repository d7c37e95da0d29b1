"""Plain (non-atomic) reference counts in numba's runtime, for a process whose compiled code
runs on one thread: the ``tagcache`` command.

numba's runtime (NRT) counts the references to every array it manages with atomic
read-modify-write instructions (``lock xadd`` on x86), so that compiled code may run on
several threads at once. The engine's step functions take state records (numba structrefs,
flat.py) and read their array fields, and every field read the refcount-pruning pass cannot
pair up costs an atomic increment and decrement: 40 to 100 of them for one replayed event on
the full model's read path. Measured on the 11.4M-request page trace of ``make bench``: one
replay of the kernel page cache with the tag-storage cleancache takes 5.2 s with atomic
counts and 2.2 s with plain ones (idle backend: 3.9 s and 1.8 s).

In the ``tagcache`` command compiled code holds the GIL (no ``parallel``, no threads of its
own; the progress bar's thread runs Python only), and the GIL orders it against any count
change made by another thread, with one exception: the trace parsers' loops release the GIL
(``nogil``) so that the thread loading the engine (engine/warm.py preload()) runs beside
them, and they touch only arrays that thread never sees (the file's bytes, the parsed ids,
their own scratch). A count is only ever changed by one thread at a time, so the counts need
not be atomic there. A library user may run numba code of their own on
several threads, so importing tagcache changes nothing: the command (cli.main) calls
:func:`use_plain_refcounts`, and a notebook that knows it is single-threaded may too.

numba has a switch for this (``nrtdynmod._disable_atomicity``, "to measure the overhead of
atomic refcounts"), but its decrement returns the count from before, so ``NRT_decref`` never
sees zero and nothing compiled code releases is ever freed. Here numba's generator of the two
functions is replaced, before the runtime is compiled, by one that loads, adds and stores,
returning the new count as the atomic version does. When the runtime is already compiled or
numba's internals are not the expected ones, nothing changes (atomic counts: the same results,
slower).
"""

from __future__ import annotations

from typing import Any


def _define_plain_inc_dec(module: Any, op: str, ordering: str) -> Any:
    """nrtdynmod._define_atomic_inc_dec()'s contract (``nrt_atomic_add``/``_sub``: change the
    count at the pointer by one, return the new count) without the atomic instruction."""
    from llvmlite import ir
    from numba.core.runtime.nrtdynmod import _word_type

    ftype = ir.FunctionType(_word_type, [_word_type.as_pointer()])
    fn = ir.Function(module, ftype, name=f"nrt_atomic_{op}")
    [ptr] = fn.args
    builder = ir.IRBuilder(fn.append_basic_block())
    new = getattr(builder, op)(builder.load(ptr), ir.Constant(_word_type, 1))
    builder.store(new, ptr)
    builder.ret(new)
    return fn


def use_plain_refcounts() -> bool:
    """Make this process's numba runtime count references with plain loads and stores;
    True if it will, False if it cannot (runtime already compiled, or a numba whose runtime
    generator is not the one this replaces)."""
    from numba.core.runtime import nrtdynmod, rtsys

    current = getattr(nrtdynmod, "_define_atomic_inc_dec", None)
    if current is _define_plain_inc_dec:
        return not rtsys._init or plain_refcounts_in_use()
    if getattr(rtsys, "_init", True) or current is None or not hasattr(nrtdynmod, "_word_type"):
        return False
    nrtdynmod._define_atomic_inc_dec = _define_plain_inc_dec
    return True


def plain_refcounts_in_use() -> bool:
    """Whether the compiled runtime's reference counts are the plain ones (its IR has no
    atomic read-modify-write); False before the runtime is compiled."""
    from numba.core.runtime import rtsys

    lib = getattr(rtsys, "_library", None)
    if not getattr(rtsys, "_init", False) or lib is None:
        return False
    return "atomicrmw" not in lib.get_llvm_str()
