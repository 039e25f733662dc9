"""jim-export for Python: the UniFFI bindings of the jim-export library (`jim_export.jim_export`,
generated at build time), re-exported here, plus what a Python process needs at exit.

At interpreter exit every `ExportEngine` still running is shut down (its runs are cancelled, finish
their in-flight operations, persist their outcomes and return their unexecuted claims) before the
interpreter starts finalizing. Without this a run still going in a daemon thread would call its
listener while the interpreter finalizes, and CPython ends any thread that calls into it then, which
aborts the process when that thread is one of the engine's.
"""

from __future__ import annotations

import atexit as _atexit
import threading as _threading
import weakref as _weakref

from .jim_export import *  # noqa: F401,F403  (the generated bindings are this package's API)
from ._secret import Secret  # noqa: F401  (the class the bindings wrap every secret in; not in __all__)
from .jim_export import ExportEngine as _ExportEngine

_live = _weakref.WeakSet()
_live_lock = _threading.Lock()
_engine_init = _ExportEngine.__init__


def _tracked_init(self, *args, **kwargs):
    _engine_init(self, *args, **kwargs)
    with _live_lock:
        _live.add(self)


_ExportEngine.__init__ = _tracked_init


@_atexit.register
def _shut_down_engines() -> None:
    with _live_lock:
        engines = list(_live)
    for engine in engines:
        try:
            engine.shutdown()
        except Exception:  # an engine half torn down already: nothing left to stop
            pass
