// The Python test server, written to a temporary file at test time.
// Usage: python3 server.py [--tls CERT KEY] [--client-ca CA]; prints its port on stdout; exits when stdin closes.
let testServerScript = #"""
import json, os, select, socket, ssl, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

stats = {}
stats_lock = threading.Lock()
PATTERN = bytes((i * 7 + 3) % 256 for i in range(65536))

def bump(name):
    with stats_lock:
        stats[name] = stats.get(name, 0) + 1

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_chunked(self, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def handle_any(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        body = self.read_body()
        if path == "/echo":
            peer = None
            if isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                if cert:
                    peer = dict(x[0] for x in cert["subject"]).get("commonName")
            out = {"method": self.command, "path": self.path,
                   "headers": [[k, v] for k, v in self.headers.items()],
                   "body": body.decode("latin-1"), "peer": peer}
            self.reply(200, json.dumps(out).encode())
        elif path == "/status":
            self.reply(int(q["code"]), b"status body", "text/plain", [("X-Multi", "a"), ("x-multi", "b")])
        elif path == "/redirect":
            self.reply(302, b"", "text/plain", [("Location", "/echo")])
        elif path == "/slow":
            bump("slow_started:" + q.get("tag", ""))
            time.sleep(int(q["ms"]) / 1000)
            self.reply(200, b"slow done", "text/plain")
        elif path == "/big":
            self.reply(200, b"x" * int(q["bytes"]), "application/octet-stream")
        elif path == "/stream":
            n, delay = int(q.get("n", "5")), int(q.get("delay_ms", "0")) / 1000
            self.start_chunked("text/plain")
            try:
                for i in range(n):
                    self.chunk(b"line %d\n" % i)
                    if delay:
                        time.sleep(delay)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                bump("stream_aborted:" + q.get("tag", ""))
                self.close_connection = True
        elif path == "/bigstream":
            blocks = int(q["blocks"])
            self.start_chunked("application/octet-stream")
            try:
                for _ in range(blocks):
                    self.chunk(PATTERN)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
        elif path == "/close-mid":
            self.start_chunked("text/plain")
            self.chunk(b"partial\n")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/hold":
            # Response head now, then no body until the client goes away.
            self.start_chunked("text/event-stream")
            if "first" in q:
                self.chunk(q["first"].encode())
            conn, end = self.connection, time.time() + 60
            while time.time() < end:
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable:
                    try:
                        data = conn.recv(1)
                    except OSError:
                        data = b""
                    if not data:
                        break
            bump("hold_closed:" + q.get("tag", ""))
            self.close_connection = True
        elif path == "/stats":
            with stats_lock:
                self.reply(200, json.dumps(stats).encode())
        else:
            self.reply(404, b"not found", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # hundreds of concurrent connections from the concurrency tests
    ctx = None

    def finish_request(self, request, client_address):
        if self.ctx is not None:
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except OSError:
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            if self.ctx is not None:
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                request.close()

    def handle_error(self, request, client_address):
        pass

def main():
    args = sys.argv[1:]
    server = Server(("127.0.0.1", 0), Handler)
    if "--tls" in args:
        i = args.index("--tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[i + 1], args[i + 2])
        if "--client-ca" in args:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args[args.index("--client-ca") + 1])
        server.ctx = ctx
    def watch_parent():
        sys.stdin.buffer.read()
        os._exit(0)
    threading.Thread(target=watch_parent, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()

main()
"""#
