#!/usr/bin/env python3
"""Opens N connections to a broker, sends ApiVersions on each, closes them all; repeats R
times and prints the broker's RSS after each round. Memory retained per closed connection
shows up as RSS that keeps climbing. Usage: connection-churn.py PID HOST:PORT [N] [ROUNDS]"""
import resource, socket, struct, sys, time

pid, address = int(sys.argv[1]), sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 12
host, port = address.rsplit(":", 1)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def rss_mib():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

# ApiVersions v0: size, api key 18, version 0, correlation id, client id "churn".
client_id = b"churn"
body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
request = struct.pack(">i", len(body)) + body
print(f"start: {rss_mib()} MiB")
for round_index in range(rounds):
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)))
        s.sendall(request)
        sockets.append(s)
    for s in sockets:
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        s.recv(size, socket.MSG_WAITALL)
    for s in sockets:
        s.close()
    time.sleep(1)
    print(f"round {round_index + 1}: {count} connections opened and closed, RSS {rss_mib()} MiB", flush=True)
