"""kombu's filesystem transport, with publishes a consumer can never see half-written.

kombu 5.x publishes a message by creating ``<ms>_<uuid>.<queue>.msg`` in the queue folder and
then writing into it; its lock is advisory and the consumer does not take it. A consumer that
lists the folder in between moves and reads an empty file, and ``json.loads("")`` is an
"unrecoverable error" that stops the worker — and the message is gone. ``benchmarks/run.py`` hit
it in the embedded phase at a few hundred messages a second (``feedwatch run`` died).

Here a message is written under a dot-name no consumer matches and renamed into place, which is
atomic on one filesystem: a consumer sees the whole message or nothing. Everything else is
kombu's transport unchanged; ``workers.app`` selects it with ``broker_transport`` whenever the
broker is the filesystem one (``FEEDWATCH_BROKER_URL=filesystem://``).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils import json as kombu_json


class Channel(filesystem.Channel):
    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``message`` on ``queue``: written aside, then renamed into the folder."""
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # kombu's consumers pick names whose part after the first dot is "<queue>.msg".
        aside = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(aside, "wb") as fh:
                fh.write(kombu_json.dumps(message).encode("utf-8"))  # type: ignore[no-untyped-call]
            os.replace(aside, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(aside)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
