#!/usr/bin/env python3
# A BMC on a slow management link: one raw TCP socket with a small receive buffer reads one HTTP
# response at a fixed byte rate. Prints one JSON line describing what arrived and how long it took.
# usage: slow-reader.py HOST PORT TARGET RANGE BYTES_PER_SECOND RCVBUF DEADLINE_SECONDS
import hashlib
import json
import socket
import sys
import time

host, port, target, byte_range, rate, rcvbuf, deadline = sys.argv[1:8]
port, rate, rcvbuf, deadline = int(port), int(rate), int(rcvbuf), float(deadline)

# pacedBytes: the body bytes read at `rate` (all but those that came with the headers);
# bodySeconds: from the end of the headers to the last byte.
result = {"status": None, "contentLength": None, "bodyLength": 0, "sha256": None, "seconds": None,
          "pacedBytes": None, "bodySeconds": None, "eof": False, "error": None, "rcvbuf": None}
start = time.monotonic()
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Set before connect so the advertised window is small from the first segment on.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    result["rcvbuf"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    s.settimeout(30)
    s.connect((host, port))
    s.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nRange: {byte_range}\r\n"
               f"User-Agent: slow-virtual-media\r\nConnection: close\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(1024)
        if not chunk:
            raise RuntimeError("connection closed before the headers ended")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin1").split("\r\n")
    result["status"] = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    length = int(headers["content-length"])
    result["contentLength"] = length
    digest = hashlib.sha256(body)
    got = len(body)
    result["pacedBytes"] = length - got
    body_start = time.monotonic()
    while got < length:
        if time.monotonic() - start > deadline:
            raise RuntimeError(f"deadline of {deadline}s reached after {got} bytes")
        allowed = int((time.monotonic() - body_start) * rate) - got
        if allowed <= 0:
            time.sleep(0.01)
            continue
        chunk = s.recv(min(allowed, length - got, 4096))
        if not chunk:
            result["eof"] = True
            break
        digest.update(chunk)
        got += len(chunk)
    result["bodyLength"] = got
    result["bodySeconds"] = round(time.monotonic() - body_start, 3)
    result["sha256"] = digest.hexdigest()
    s.close()
except Exception as e:  # reported, not raised: the test decides what is a failure
    result["error"] = f"{type(e).__name__}: {e}"
result["seconds"] = round(time.monotonic() - start, 3)
print(json.dumps(result), flush=True)
