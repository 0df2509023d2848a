"""Records what each connection sends first, for fuzz seeds.

Usage: python3 capture.py OUTDIR PORT...  Listens on 127.0.0.1:PORT and
writes each connection's bytes to OUTDIR/PORT-N.bin; after a pause in
what the client sends it answers a minimal `200 OK`, so HTTP clients go on
with their next keep-alive request. See fuzz/README.md.
"""
import socket, threading, sys, os, time
out = sys.argv[1]; ports = [int(p) for p in sys.argv[2:]]
os.makedirs(out, exist_ok=True)
counter = [0]; lock = threading.Lock()
def handle(conn, port):
    with lock:
        counter[0] += 1; n = counter[0]
    buf = b''
    conn.settimeout(0.3)
    pending = False
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            d = conn.recv(65536)
            if not d: break
            buf += d; pending = True
        except ConnectionResetError:
            break
        except socket.timeout:
            if pending:
                try: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError: break
                pending = False
    conn.close()
    if buf:
        open(f"{out}/{port}-{n:03d}.bin", 'wb').write(buf)
def serve(port, fam, addr):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, port), daemon=True).start()
for p in ports:
    threading.Thread(target=serve, args=(p, socket.AF_INET, '127.0.0.1'), daemon=True).start()
while True: time.sleep(1)
