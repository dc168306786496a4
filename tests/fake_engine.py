"""A stand-in engine process for server tests: logs, forks a child (as vLLM's engine core), then serves
/health. Behaviour by argv: MODE PORT where MODE is ok | exit | hang | stubborn | vanish (at the first POST it stops
listening, answers nothing, and exits a second later: a dying engine whose exit is not seen at once)."""

import http.server
import multiprocessing
import os
import signal
import sys
import threading
import time


def child() -> None:
    time.sleep(3600)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


class Vanishing(Health):
    def do_POST(self):  # noqa: N802
        threading.Thread(target=vanish, args=(self.server,)).start()
        self.close_connection = True


def vanish(server: http.server.HTTPServer) -> None:
    server.shutdown()
    server.server_close()
    time.sleep(1.0)
    os._exit(1)


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    print("fake engine: importing", flush=True)
    time.sleep(0.2)
    print("load_weights took 0.150 s", flush=True)
    multiprocessing.Process(target=child, daemon=False).start()
    if mode == "exit":
        print("fatal: out of memory", flush=True)
        os._exit(3)  # the forked child survives its parent, as an engine core would
    if mode == "hang":
        time.sleep(3600)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("Application startup complete.", flush=True)
    handler = Vanishing if mode == "vanish" else Health
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
