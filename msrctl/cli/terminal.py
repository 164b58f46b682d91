"""Where a live view draws its frames: the terminal, full screen, or plain stdout.

`Screen` takes the terminal while in its `with` block: the alternate screen,
the cursor hidden, line wrap off, and keys read one at a time without echo
(ISIG stays on, so Ctrl-C is SIGINT and Ctrl-Z SIGTSTP).  It gives the terminal
back as it found it on every way out: q, Ctrl-C, SIGTERM, SIGHUP, an exception;
and for the time the process is stopped by Ctrl-Z.  `Frames` is the fallback
when stdout is not a terminal: one frame after another, like `top -b`.

Signal handlers only set flags; a pipe registered with signal.set_wakeup_fd
wakes the select() in wait(), which acts on them.  Standard library only, and
plain VT100/xterm sequences that every terminal emulator and tmux know.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
from typing import Any, TextIO

# Alternate screen on, cursor hidden, autowrap off (a line never spills onto the next);
# and back, in reverse.
ENTER = "\x1b[?1049h\x1b[?25l\x1b[?7l"
LEAVE = "\x1b[?7h\x1b[?25h\x1b[?1049l"
ERASE_LINE = "\x1b[2K"


def goto(row: int) -> str:
    """The cursor to the start of a screen row (0 is the top one)."""
    return f"\x1b[{row + 1};1H"


QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUIT_KEYS = b"qQ"


class Frames:
    """Frames printed one after another on a stream, a blank line between them; SIGINT,
    SIGTERM and SIGHUP set `quit` and wake wait()."""

    interactive = False

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.quit = False
        self.resized = False
        self._old: dict[int, Any] = {}
        self._wake_r = self._wake_w = -1
        self._old_wake = -1
        self._drawn = 0

    def _on(self, signum: int, flag: str) -> None:
        self._old[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda *_: setattr(self, flag, True))

    def __enter__(self) -> Frames:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wake = signal.set_wakeup_fd(self._wake_w)
        for s in QUIT_SIGNALS:
            self._on(s, "quit")
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._old_wake)
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def size(self) -> tuple[int | None, int | None]:
        """(columns, lines) to fit a frame into; None: no limit."""
        return None, None

    def draw(self, lines: list[str]) -> None:
        self.out.write(("\n" if self._drawn else "") + "".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._drawn += 1

    def _select(self, seconds: float) -> list[int]:
        ready, _, _ = select.select([self._wake_r], [], [], max(0.0, seconds))
        return list(ready)

    def wait(self, seconds: float) -> None:
        """Sleep up to seconds; return early when a signal or a key arrives (see the flags)."""
        self._select(seconds)
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass


class Screen(Frames):
    """The terminal on in_fd/out_fd, full screen while in `with`; q sets `quit`, a resize
    (SIGWINCH) `resized`, after which the caller redraws."""

    interactive = True

    def __init__(self, in_fd: int = 0, out_fd: int = 1, encoding: str | None = None) -> None:
        super().__init__()
        self.in_fd, self.out_fd = in_fd, out_fd
        self.encoding = encoding or getattr(sys.stdout, "encoding", None) or "utf-8"
        self.keys = os.isatty(in_fd)  # no keys from a pipe: Ctrl-C still quits
        self._saved: list[Any] | None = None
        self._stop_asked = False
        self._continued = False

    def _write(self, text: str) -> None:
        data = text.encode(self.encoding, errors="replace")
        while data:
            data = data[os.write(self.out_fd, data) :]

    def _take(self) -> None:
        if self._saved is not None:
            mode = termios.tcgetattr(self.in_fd)
            mode[3] &= ~(termios.ICANON | termios.ECHO)  # keys one at a time, not echoed; ISIG kept
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self.in_fd, termios.TCSANOW, mode)
        self._write(ENTER)

    def _give_back(self) -> None:
        # Each step on its own: a hung-up terminal fails them, and the rest must still run.
        try:
            self._write(LEAVE)
        except OSError:
            pass
        if self._saved is not None:
            try:
                termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self._saved)
            except (OSError, termios.error):
                pass

    def __enter__(self) -> Screen:
        sys.stdout.flush()  # whatever was printed before goes out before the screen switches
        super().__enter__()
        try:
            if self.keys:
                self._saved = termios.tcgetattr(self.in_fd)
            self._on(signal.SIGWINCH, "resized")
            self._on(signal.SIGTSTP, "_stop_asked")
            self._on(signal.SIGCONT, "_continued")
            self._take()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._give_back()
        super().__exit__()

    def size(self) -> tuple[int | None, int | None]:
        cols, lines = os.get_terminal_size(self.out_fd)
        return cols, lines

    def draw(self, lines: list[str]) -> None:
        """The frame from the top left corner, every row of the screen erased and written:
        no newline (that would scroll at the bottom), nothing the last frame left behind."""
        rows = self.size()[1] or len(lines)
        padded = lines[:rows] + [""] * (rows - len(lines))
        self._write("".join(goto(y) + ERASE_LINE + line for y, line in enumerate(padded)))

    def _suspend(self) -> None:
        """Ctrl-Z: the terminal back to the shell, stop; on fg (SIGCONT), take it again."""
        self._stop_asked = False
        self._give_back()
        old = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until continued
        signal.signal(signal.SIGTSTP, old)

    def wait(self, seconds: float) -> None:
        ready = select.select([self._wake_r, *([self.in_fd] if self.keys else [])], [], [], max(0.0, seconds))[0]
        super().wait(0)
        if self.in_fd in ready:
            try:
                data = os.read(self.in_fd, 256)
            except OSError:
                data = b""
            if not data:  # the terminal hung up
                self.keys = False
                self.quit = True
            elif any(k in data for k in QUIT_KEYS):
                self.quit = True
        if self._stop_asked:
            self._suspend()
            self._continued = True
        if self._continued:  # after fg (or a SIGSTOP/SIGCONT from elsewhere): take it again, redraw
            self._continued = False
            self._take()
            self.resized = True
