"""The `jaxscd` console script: Ctrl-C handling that holds from the first instant, then ``jaxscd.cli``.

It lives outside the package because importing ``jaxscd`` imports JAX (about a second), and a Ctrl-C during that
import would otherwise end in a traceback or an abort. Ctrl-C at any moment exits 130 with one line and writes
nothing:

- before the command starts (imports, argument parsing), the process exits at once: nothing has been written;
- while it runs, KeyboardInterrupt unwinds the command (temporary files and staging directories are removed, the
  CLI prints ``jaxscd: error: interrupted...``); an interrupt raised where Python cannot propagate it (JAX's
  garbage-collection callback: "Exception ignored in ...") exits at once, and one that library code catches is
  still honoured: a watchdog exits after ``GRACE_S`` seconds;
- every exit skips interpreter shutdown (``os._exit``), where XLA's threads could crash the process and where
  SIGINT's default action is restored.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130
MESSAGE = "jaxscd: error: interrupted; nothing was written"
GRACE_S = 3.0  # time the command gets to unwind after a Ctrl-C before the process exits anyway


def _exit_now(message: str | None = MESSAGE) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if message:
        os.write(2, (message + "\n").encode())
    os._exit(EXIT_INTERRUPTED)


def _before_command(signum, frame):
    _exit_now()


def _during_command(signum, frame):
    threading.Timer(GRACE_S, _exit_now).start()  # daemon-free on purpose: it must fire even if main is stuck
    signal.signal(signal.SIGINT, _before_command)  # a second Ctrl-C exits at once
    raise KeyboardInterrupt


def _unraisable(report) -> None:
    if isinstance(report.exc_value, KeyboardInterrupt):  # raised in a callback that cannot propagate it
        _exit_now()
    sys.__unraisablehook__(report)


def main() -> None:
    signal.signal(signal.SIGINT, _before_command)
    sys.unraisablehook = _unraisable
    import click

    from jaxscd.cli import main as cli

    signal.signal(signal.SIGINT, _during_command)
    try:
        code = cli.main(prog_name="jaxscd", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _exit_now()
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except SystemExit as exit_:
        code = exit_.code
    if code == EXIT_INTERRUPTED:
        _exit_now(message=None)  # the CLI has printed its line
    _exit_with(code)


def _exit_with(code) -> None:
    """sys.exit's exit status, without interpreter shutdown: finalization restores SIGINT's default action, so
    a Ctrl-C landing there would kill the process by the signal instead of exiting 130."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    main()
