"""Where a connection was checked out: captured cheaply at checkout, formatted only when reported.

At checkout the agent keeps, for a few application frames, the module name, the code object and
the bytecode offset: no strings are built, no line number is looked up (the offset is turned into
one later) and no frame is kept (a kept frame would keep its locals alive). Formatting and the
fingerprint happen on the reporter thread, for the few connections held past the threshold.
"""

from __future__ import annotations

import hashlib
import sys
from types import CodeType

# Frames of these modules (and their submodules) say nothing about which application code holds
# the connection: the pool libraries, their drivers, `with` plumbing, thread start-up, the agent.
SKIPPED_MODULES = ("sqlalchemy", "psycopg_pool", "psycopg", "contextlib", "threading", "poolboard.agent")

# Enough application frames to name the leaking function and its callers; more costs checkout time.
MAX_FRAMES = 8
# A bound on the walk, so a deep library stack (an ORM inside a framework) never costs more.
MAX_WALK = 64

Frame = tuple[str, CodeType, int]  # (module name, code object, bytecode offset f_lasti)
Stack = tuple[Frame, ...]  # innermost first


class FrameFilter:
    """Which frames to leave out: `SKIPPED_MODULES` plus the application's own wrappers."""

    def __init__(self, extra_skipped: tuple[str, ...] = ()):
        names = (*SKIPPED_MODULES, *extra_skipped)
        self._exact = frozenset(names)
        self._prefixes = tuple(f"{name}." for name in names)
        # Module name -> skipped?, filled as modules are met: a dict lookup on an interned string
        # is several times cheaper than the prefix test it replaces.
        self._skipped: dict[str, bool] = {}

    def is_skipped(self, module: str) -> bool:
        return module in self._exact or module.startswith(self._prefixes)

    def capture(self) -> Stack:
        """The innermost application frames of the current call stack (skipped modules left out)."""
        cache = self._skipped
        frames: list[Frame] = []
        frame = sys._getframe(1)
        walked = 0
        while frame is not None and walked < MAX_WALK:
            module = frame.f_globals.get("__name__", "")
            skipped = cache.get(module)
            if skipped is None:
                skipped = cache[module] = self.is_skipped(module)
            if not skipped:
                frames.append((module, frame.f_code, frame.f_lasti))
                if len(frames) == MAX_FRAMES:
                    break
            frame = frame.f_back
            walked += 1
        return tuple(frames)


def line_of(code: CodeType, offset: int) -> int:
    """The source line of bytecode `offset` in `code` (what `frame.f_lineno` would have said)."""
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def fingerprint(stack: Stack) -> str:
    """sha1 of module, function and line of each frame: the same code path gives the same value in
    every process and on every host (no file paths, no addresses)."""
    text = "\n".join(f"{module}:{code.co_qualname}:{line_of(code, offset)}" for module, code, offset in stack)
    return hashlib.sha1(text.encode()).hexdigest()


def function_name(stack: Stack) -> str:
    """The innermost application function, e.g. `billing.exports.leaky_invoice_export`."""
    if not stack:
        return "<unknown>"
    module, code, _offset = stack[0]
    return f"{module}.{code.co_qualname}"


def format_stack(stack: Stack) -> str:
    """Traceback-style lines, outermost call first (as Python prints them)."""
    return "".join(
        f'  File "{code.co_filename}", line {line_of(code, offset)}, in {code.co_qualname}\n'
        for _module, code, offset in reversed(stack)
    )
