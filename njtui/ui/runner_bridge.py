"""Runner events, carried from the runner's threads to a screen in batches.

A cell printing 200,000 lines then costs a few redraws, not 200,000: the first event of a
batch posts one `RunnerEventsReady`, and the screen drains everything queued by then.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from njtui.runner import Runner


class RunnerEventsReady(Message):
    """Runner events are waiting in the bridge's queue."""


class RunnerBridge:
    def __init__(self, target: MessagePump, runner: Runner) -> None:
        self.target = target
        self.runner = runner
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._posted = False
        runner.subscribe(self._put)
        runner.log.subscribe(self._put)

    def _put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            if self._posted:
                return
            self._posted = True
        self.target.post_message(RunnerEventsReady())

    def drain(self) -> list[Any]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._posted = False
        return items

    def close(self) -> None:
        self.runner.unsubscribe(self._put)
        self.runner.log.unsubscribe(self._put)
