"""The streams between the sweep and a cell's process, each with one job.

A cell's process is ``python -m bench.executors.worker once|serve FD``
(:mod:`bench.executors.worker`); :class:`CellProcess` is the sweep's end of it:

- **stdin** carries the requests, one JSON line each (:func:`request_line`):
  ``{"id": N, "command": "run" | "estimate", "spec": {...}}``, the spec inline;
- **the result pipe** (file descriptor FD of the child, an ``os.pipe`` passed with
  ``pass_fds``) carries the results, one JSON line per request, ``{"id": N, "payload": {...}
  | null}``, written whole at the request's very end by the worker and by nothing else. The
  sweep reads a result from there only, as pyperf's manager reads a benchmark's from its pipe:
  nothing a cell prints or leaves on disk can stand for a result, and a line cut short (the
  process died mid-write) or that is not a reply to the request (:func:`reply_payload`) is no
  result -- the request then failed the way its process ended;
- **stdout** carries the cell's progress (its per-epoch lines), relayed as they arrive; every
  line a request printed is relayed before its result is read, since the worker flushes
  stdout before it writes the result;
- **stderr** is the process's log, one file; a request's log is what was appended to it while
  the request ran (:meth:`CellProcess.log_size`, :meth:`CellProcess.read_log`).

The sweep waits on stdout and the result pipe together (``selectors``, with a deadline), never
on a blocking read. As a context manager a :class:`CellProcess` kills its whole process tree
(:func:`bench.executors.proctree.kill_session`) on any exception raised in the ``with`` body
(Ctrl-C or SIGTERM of the sweep, or its own failure): a cell never outlives the sweep's
interest in it.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.executors.proctree import kill_session

_CHUNK = 1 << 16  # bytes per read of a pipe


def cell_command(mode: str, result_fd: int) -> list[str]:
    """``python -m bench.executors.worker MODE FD``: the child entry point."""
    return [sys.executable, "-m", "bench.executors.worker", mode, str(result_fd)]


def request_line(request_id: int, command: str, spec: dict[str, Any]) -> str:
    """One request as the line the worker reads on its stdin."""
    return json.dumps({"id": request_id, "command": command, "spec": spec}) + "\n"


def reply_payload(line: bytes | None, request_id: int) -> dict[str, Any] | None:
    """The payload of the result line ``line`` when it is the reply to request ``request_id``,
    else None: no line, a line that is not JSON, not an object, or another request's."""
    if line is None:
        return None
    try:
        reply = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(reply, dict) or reply.get("id") != request_id:
        return None
    payload = reply.get("payload")
    return payload if isinstance(payload, dict) else None


class CellProcess:
    """A started cell process (``mode`` "once" or "serve") and the sweep's end of its streams.

    ``env`` is its environment; its stderr goes to ``log_path`` (truncated). It runs in a
    session of its own, so :meth:`kill` ends it with anything it started.
    """

    def __init__(self, mode: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = Path(log_path)
        read_fd, write_fd = os.pipe()
        try:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    cell_command(mode, write_fd), stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
                    pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child's copy is the only writer: its end is our EOF
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdout = self.proc.stdout.fileno()
        self._results = read_fd
        for fd in (self._stdout, self._results):
            os.set_blocking(fd, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)
        self._selector.register(self._results, selectors.EVENT_READ)
        self._open = {self._stdout, self._results}
        # Text as a text-mode pipe would give it: UTF-8 (bad bytes replaced), universal newlines.
        self._text = io.IncrementalNewlineDecoder(
            codecs.getincrementaldecoder("utf-8")(errors="replace"), translate=True)
        self._line = ""  # the start of a stdout line not yet ended
        self._replies = bytearray()  # result bytes not yet taken as a line

    # -- the context manager: the process's tree dies with any exception --

    def __enter__(self) -> CellProcess:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.kill()

    # -- requests and results --

    def send(self, line: str) -> None:
        """Write one request line; a process already gone is no error here (its end of the
        result pipe says so)."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def close_stdin(self) -> None:
        """No more requests: the worker reads end of file."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass

    def next_reply(self, deadline: float, on_line: Callable[[str], None] | None
                   ) -> tuple[str, bytes | None]:
        """Wait until ``deadline`` (``time.monotonic()`` s) for the next result line, relaying
        stdout lines to ``on_line`` meanwhile.

        Returns ``("reply", line)``; ``("ended", None)`` when the process closed its result
        pipe or exited without a complete line (a partial one is dropped); ``("timeout",
        None)`` when the deadline passed first.
        """
        while True:
            reply = self._take_reply()
            if reply is not None:
                self._drain(on_line)  # the request's last lines come before its result
                return "reply", reply
            if self._results not in self._open:
                return "ended", None
            if self.proc.poll() is not None:
                # Exited, its pipes perhaps held open by a process it started: what it wrote
                # is readable now, and nothing more is coming from it.
                self._drain(on_line)
                reply = self._take_reply()
                return ("reply", reply) if reply is not None else ("ended", None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            self._pump(min(remaining, 1.0), on_line)

    def finish(self, deadline: float, on_line: Callable[[str], None] | None) -> bool:
        """Relay what is left on stdout and wait for the process to exit, until ``deadline``;
        True when it exited in time (then it is reaped).

        A process that ends its streams right at the deadline still gets 0.1 s to exit.
        """
        deadline = max(deadline, time.monotonic() + 0.1)
        while self.proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._open:
                self._pump(min(remaining, 0.2), on_line)
            else:
                time.sleep(min(remaining, 0.05))
        self._drain(on_line)
        self._flush_line(on_line)
        return True

    def wait(self, timeout_s: float) -> None:
        """Wait ``timeout_s`` seconds for a dying process to exit, then kill what is left."""
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """End the process and its whole tree, if it is still running, and close the pipes
        (idempotent)."""
        if self.proc.poll() is None:
            kill_session(self.proc)
        self.close()

    def close(self) -> None:
        """Close the sweep's ends of the pipes (the process is left as it is; idempotent)."""
        if self._results < 0:
            return
        for fd in list(self._open):
            self._selector.unregister(fd)
        self._open.clear()
        self._selector.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            os.close(self._results)
        except OSError:
            pass
        self._results = -1

    # -- the log --

    def log_size(self) -> int:
        """Bytes in the log now: where the next request's log begins."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def read_log(self, start: int = 0) -> str:
        """The log from byte ``start`` to its end."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    # -- reading --

    def _take_reply(self) -> bytes | None:
        end = self._replies.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._replies[:end])
        del self._replies[:end + 1]
        return line

    def _pump(self, timeout_s: float, on_line: Callable[[str], None] | None) -> None:
        """Wait up to ``timeout_s`` s for either pipe, then read what each one holds."""
        if not self._open:
            time.sleep(timeout_s)
            return
        for key, _ in self._selector.select(timeout_s):
            self._read(key.fd, on_line)

    def _drain(self, on_line: Callable[[str], None] | None) -> None:
        """Read everything both pipes hold now, without waiting."""
        for fd in list(self._open):
            self._read(fd, on_line)

    def _read(self, fd: int, on_line: Callable[[str], None] | None) -> None:
        while fd in self._open:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:  # end of file
                self._selector.unregister(fd)
                self._open.discard(fd)
                if fd == self._stdout:
                    self._lines(self._text.decode(b"", final=True), on_line)
                    self._flush_line(on_line)
                return
            if fd == self._stdout:
                self._lines(self._text.decode(chunk), on_line)
            else:
                self._replies += chunk

    def _lines(self, text: str, on_line: Callable[[str], None] | None) -> None:
        *done, self._line = (self._line + text).split("\n")
        if on_line is not None:
            for line in done:
                on_line(line)

    def _flush_line(self, on_line: Callable[[str], None] | None) -> None:
        """A last stdout line without its newline, once the stream has ended."""
        if self._line and on_line is not None and self._stdout not in self._open:
            on_line(self._line)
        if self._stdout not in self._open:
            self._line = ""
