"""What the serving verbs share: announce, serve until SIGTERM or Ctrl-C, close the socket."""

from __future__ import annotations

import signal
import sys


def serve_until_stopped(server, banner: str, verb: str) -> int:
    """`server` has `serve_forever()` and `httpd`; `banner` goes to stderr once it listens."""

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(banner, file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"mtr {verb}: stopped", file=sys.stderr)
    finally:
        server.httpd.server_close()
    return 0
