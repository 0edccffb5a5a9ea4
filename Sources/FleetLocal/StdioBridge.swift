/// The stdio-to-HTTP bridge the local driver puts in front of `transport: stdio` servers, so they can
/// be probed and scaled like the others: one bridge process per instance, leader of the instance's
/// process group, with the stdio server as its child.
///
/// Written here rather than taken from PyPI: `mcp-proxy` pins the Python MCP SDK below 2.0, which
/// would downgrade the SDK the project's own servers use. This one needs only the Python standard
/// library. It serves streamable HTTP at `--path` with JSON responses (no server-initiated stream:
/// GET answers 405, as the spec allows), maps request ids so concurrent clients cannot collide, answers
/// server-to-client requests (sampling, elicitation) with "method not found", and exits with the
/// server's status when the server exits, so the supervisor sees a crash as a crash.
enum StdioBridge {
    static let fileName = "mcpfleet-stdio-bridge.py"

    static let script = #"""
#!/usr/bin/env python3
"""mcpfleet stdio bridge: serves one stdio MCP server over streamable HTTP (JSON responses)."""
import argparse, http.server, itertools, json, os, queue, signal, subprocess, sys, threading, uuid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/mcp")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        sys.exit("mcpfleet-stdio-bridge: no server command")

    pending, lock, counter, session = {}, threading.Lock(), itertools.count(1), uuid.uuid4().hex

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def reply(self, code, body=None, headers=()):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path.split("?")[0] != args.path:
                return self.reply(404, {"error": "not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            except ValueError:
                return self.reply(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
            batch = isinstance(body, list)
            waits = []
            for message in body if batch else [body]:
                if isinstance(message, dict) and "method" in message and "id" in message:
                    inner, box = next(counter), queue.Queue(1)
                    with lock:
                        pending[inner] = box
                    waits.append((message["id"], inner, box))
                    message = dict(message, id=inner)
                send(message)
            if not waits:
                return self.reply(202)
            answers = []
            for original, inner, box in waits:
                try:
                    answer = box.get(timeout=300)
                except queue.Empty:
                    with lock:
                        pending.pop(inner, None)
                    answer = {"jsonrpc": "2.0", "error": {"code": -32603, "message": "the server did not answer"}}
                answers.append(dict(answer, id=original))
            self.reply(200, answers if batch else answers[0], [("Mcp-Session-Id", session)])

        def do_GET(self):
            self.reply(405, headers=[("Allow", "POST, DELETE")])

        def do_DELETE(self):
            self.reply(200)

    # Bind before starting the server, so a port conflict fails fast and leaves no child behind.
    httpd = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def send(message):
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with lock:
            try:
                child.stdin.write(data)
                child.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

    def finish(code):
        sys.stdout.flush()
        os._exit(code)

    def read():
        for line in child.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict) or "id" not in message:
                continue
            if "result" in message or "error" in message:
                with lock:
                    box = pending.pop(message["id"], None)
                if box is not None:
                    box.put(message)
            elif "method" in message:
                send({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "not supported behind the mcpfleet stdio bridge"}})
        code = child.wait()
        finish(code if code >= 0 else 128 - code)

    def stop(signum, _frame):
        child.terminate()
        try:
            child.wait(timeout=4)
        except subprocess.TimeoutExpired:
            child.kill()
        finish(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=read, daemon=True).start()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
"""#
}
