"""A mutual-TLS front for the Docker socket, for the DOCKER_TLS_VERIFY end-to-end test:
it stands in for `dockerd --tlsverify` on 127.0.0.1:PORT, with the certificates in CERTDIR
(server.pem, server-key.pem, ca.pem). Usage: python3 tls_proxy.py PORT CERTDIR"""
import socket, ssl, sys, threading
port, certdir = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{certdir}/server.pem", f"{certdir}/server-key.pem")
ctx.load_verify_locations(f"{certdir}/ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.create_server(("127.0.0.1", port))
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    finally:
        try: b.shutdown(socket.SHUT_WR)
        except OSError: pass
def serve(c):
    try: t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print("handshake:", e, file=sys.stderr); return
    u = socket.socket(socket.AF_UNIX); u.connect("/var/run/docker.sock")
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
