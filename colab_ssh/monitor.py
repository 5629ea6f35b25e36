"""A background thread that keeps sshd and the tunnel up between start_ssh() calls.

Users find out a tunnel died only when their ssh session hangs; the monitor notices within
one interval, brings back what died, and says where the new address is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Monitor"]

logger = logging.getLogger("colab_ssh.monitor")


class Monitor:
    """Calls ``check`` every ``interval`` seconds until stopped; a failing check is logged and retried.

    Except errors of the ``give_up_on`` types: those say retrying cannot help (the port is
    someone else's now, or another process stopped the session), so the monitor records the
    error, logs it once and ends, instead of failing the same way every interval.
    """

    def __init__(
        self,
        check: Callable[[], None],
        interval: float,
        *,
        give_up_on: tuple[type[Exception], ...] = (),
    ) -> None:
        self._check = check
        self.interval = interval
        self._give_up_on = give_up_on
        self._stopped = threading.Event()
        self.last_error: str | None = None
        # A daemon thread: it must never keep the notebook kernel or a script from exiting.
        self._thread = threading.Thread(target=self._run, name="colab_ssh-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self._check()
                self.last_error = None
            except self._give_up_on as error:
                self.last_error = str(error)
                logger.warning("colab_ssh stopped watching the SSH server: %s", self.last_error)
                return
            except Exception as error:  # keep watching: the next round may succeed (network back)
                self.last_error = f"{type(error).__name__}: {error}"
                logger.warning("colab_ssh could not bring the SSH server back yet: %s", self.last_error)

    def stop(self, *, wait: bool = True) -> None:
        """Stop after the current round; ``wait=False`` when the caller holds a lock a round may need."""
        self._stopped.set()
        if wait and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
