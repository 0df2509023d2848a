import http.server, os, socket, sys, time
name, addr, port, down = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
log_requests = os.environ.get("BACKEND_LOG_REQUESTS") == "1"
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if log_requests:
            print("REQ %.6f %s %s" % (time.time(), self.client_address[0], self.path), flush=True)
        if self.path.startswith("/health"):
            if os.path.exists(down):
                return self.reply(503, b"down\n")
            return self.reply(200, b"ok\n")
        if self.path.startswith("/slow/"):
            time.sleep(int(self.path[6:]) / 1000.0)
        self.reply(200, ("%s via %s\n" % (name, self.client_address[0])).encode())
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
S((addr, port), H).serve_forever()
