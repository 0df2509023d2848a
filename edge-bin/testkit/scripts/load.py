import http.client, json, socket, ssl, sys, threading, time
c = json.loads(sys.argv[1])
if c.get("cafile"):
    ctx = ssl.create_default_context(cafile=c["cafile"])
else:
    ctx = ssl._create_unverified_context()
class Conn(http.client.HTTPSConnection):
    def connect(self):
        s = socket.create_connection((c["ip"], c["port"]), timeout=c["connect_timeout"])
        s.settimeout(c["timeout"])
        self.sock = ctx.wrap_socket(s, server_hostname=c["host"])
def once():
    conn = Conn(c["host"], c["port"], context=ctx, timeout=c["timeout"])
    try:
        conn.request("GET", c["path"])
        r = conn.getresponse()
        body = r.read().decode(errors="replace").strip()
        if r.status != 200:
            return False, "status %d" % r.status, body
        return True, "", body
    except Exception as e:
        return False, "%s: %s" % (type(e).__name__, e), ""
    finally:
        conn.close()
lock = threading.Lock()
end = time.time() + c["duration"]
def worker(w, retry, pause):
    n = 0
    while time.time() < end and n < c["max"]:
        t0 = time.time()
        ok, err, body = once()
        rec = {"w": w, "t0": t0, "t1": time.time(), "ok": ok, "err": err, "body": body}
        if not ok and retry:
            time.sleep(c["retry_after"])
            rok, rerr, rbody = once()
            rec.update(rok=rok, rerr=rerr, t2=time.time(), rbody=rbody)
        with lock:
            print(json.dumps(rec), flush=True)
        n += 1
        time.sleep(pause)
ts = [threading.Thread(target=worker, args=(w, True, 0.0)) for w in range(c["workers"])]
if c.get("probe"):
    ts.append(threading.Thread(target=worker, args=(-1, False, c["probe_pause"])))
for t in ts:
    t.start()
for t in ts:
    t.join()
