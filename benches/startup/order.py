#!/usr/bin/env python3
"""Makes benches/startup/symbols.order: the code the image's binary runs at start-up and idle,
then what it runs with containers to follow, for the linker to lay out together (build.rs).

It builds the image's binary (glibc static, `dist` profile) with a map of the link, runs it under
valgrind's callgrind the way the e2e bench's `memory` case runs it (one `raw+tcp` route,
`LUASPOUT_SOURCE=files`, `/health` asked, 3 s idle), dumps the instructions run so far, then
starts idle containers and one that writes 20,000 lines, asks `/containers` and `/metrics`, and
stops luaspout. Every instruction's address is looked up in the map; the input sections run
in the first part are listed first, the others after, each part sorted by name so that the list
changes only where the code does. The header names the rustc and the Cargo.lock the names belong
to, which build.rs compares with its own.

Needs root, a running dockerd, Debian's busybox-static and glibc's static libraries (tests/run.sh
installs and starts those) and valgrind; run from anywhere: `python3 benches/startup/order.py`.
"""

import bisect
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "benches", "startup", "symbols.order")
IMAGE = "luaspout-order-busybox:latest"
PREFIX = "lsorder-"
WRITER_LINES = 20000

# One line of lld's map: address, load address, size, alignment, then the output section (no
# indent), an input section (8 spaces) or a symbol (16 spaces).
MAP_LINE = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (\s*)(.*)$")


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build(link_map):
    """Builds the image's binary as the Dockerfile does, with a map of its link; its path."""
    host = re.search(r"^host: (.*)$", subprocess.check_output(["rustc", "-vV"], text=True), re.M).group(1)
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static", LUASPOUT_LINK_MAP=link_map)
    run("cargo", "build", "--profile", "dist", "--locked", "--target", host, cwd=ROOT, env=env)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(os.path.abspath(target_dir), host, "dist", "luaspout")


def text_sections(link_map):
    """The input sections of `.text`: (start, end, section name, symbols), by address."""
    sections, in_text = [], False
    with open(link_map) as f:
        for line in f:
            m = MAP_LINE.match(line)
            if not m:
                continue
            start, size, indent, rest = int(m.group(1), 16), int(m.group(2), 16), len(m.group(3)), m.group(4)
            if indent == 0:
                in_text = rest.strip() == ".text"
            elif not in_text:
                continue
            elif indent == 8:
                name = rest[rest.rfind(":(") + 2 : -1] if ":(" in rest else rest
                sections.append((start, start + size, name, []))
            elif indent == 16 and sections:
                sections[-1][3].append(rest.strip())
    sections.sort()
    return sections


def symbol_of(section):
    """The name the ordering file gives a section: a Rust function's section is named after its
    mangled symbol (the map shows the symbols themselves demangled); a C function's after the
    function, or, for objects compiled without function sections (glibc), its first symbol."""
    _, _, name, symbols = section
    for prefix in (".text.unlikely.", ".text.hot.", ".text.startup.", ".text."):
        if name.startswith(prefix):
            suffix = name[len(prefix) :]
            if suffix.startswith(("_ZN", "_R")) or suffix in symbols:
                return suffix
            break
    return symbols[0] if symbols else None


def executed(dump, sections, starts):
    """Indices of the sections holding an instruction callgrind counted in `dump` (its
    addresses are the binary's own: callgrind takes the load address off)."""
    hit, ours = set(), False
    with open(dump) as f:
        for line in f:
            if line.startswith("ob="):
                ours = line.rstrip().endswith("/luaspout")
            elif ours and line.startswith("0x"):
                addr = int(line.split(None, 1)[0], 16)
                i = bisect.bisect_right(starts, addr) - 1
                if i >= 0 and addr < sections[i][1]:
                    hit.add(i)
    return hit


def sink():
    """A TCP listener that reads and drops what the route sends; its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def drain(conn):
        with conn:
            while conn.recv(65536):
                pass

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read()


def test_image(workdir):
    os.makedirs(os.path.join(workdir, "image", "bin"))
    run("cp", "/bin/busybox", os.path.join(workdir, "image", "bin", "busybox"))
    with open(os.path.join(workdir, "image", "Dockerfile"), "w") as f:
        f.write('FROM scratch\nCOPY bin/busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n')
    run("docker", "build", "-q", "-t", IMAGE, os.path.join(workdir, "image"),
        env=dict(os.environ, DOCKER_BUILDKIT="0"), stdout=subprocess.DEVNULL)


def profile(binary, workdir):
    """Runs luaspout under callgrind; the dumps of the two parts (idle, then containers)."""
    http, route = free_port(), f"raw+tcp://127.0.0.1:{sink()}?filter.name={PREFIX}*"
    out = os.path.join(workdir, "callgrind.out")
    env = dict(os.environ, PORT=str(http), LUASPOUT_SOURCE="files")
    cmd = ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-pos=no", "--compress-strings=no",
           f"--callgrind-out-file={out}", binary, route]
    log = open(os.path.join(workdir, "valgrind.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    containers = []
    try:
        deadline = time.time() + 120
        while True:
            try:
                get(http, "/health")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"luaspout under callgrind did not answer /health: {log.name}")
                time.sleep(0.5)
        time.sleep(3)
        run("callgrind_control", "--dump", str(proc.pid), stdout=subprocess.DEVNULL)
        for i in range(3):
            name = f"{PREFIX}idle{i}"
            run("docker", "run", "-d", "--name", name, IMAGE, "sleep", "1000", stdout=subprocess.DEVNULL)
            containers.append(name)
        writer = f"{PREFIX}writer"
        containers.append(writer)
        script = (f"i=0; while [ $i -lt {WRITER_LINES} ]; do echo \"line $i GET /index.html HTTP/1.1 200 "
                  "1234 padding to about a hundred bytes ..........................\"; i=$((i+1)); done; "
                  "echo done >&2")
        run("docker", "run", "--name", writer, IMAGE, "sh", "-c", script, stdout=subprocess.DEVNULL)
        time.sleep(5)
        get(http, "/containers")
        get(http, "/metrics")
    finally:
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], stdout=subprocess.DEVNULL)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    parts = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    if len(parts) != 1 or not os.path.exists(out):
        sys.exit(f"expected callgrind dumps {out}.1 and {out}, found {parts}")
    return [parts[0], out]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    with tempfile.TemporaryDirectory(prefix="luaspout-order-") as workdir:
        link_map = os.path.join(workdir, "luaspout.map")
        binary = build(link_map)
        test_image(workdir)
        dumps = profile(binary, workdir)
        sections = text_sections(link_map)
        starts = [s[0] for s in sections]
        seen, parts = set(), []
        for dump in dumps:
            hit = executed(dump, sections, starts) - seen
            seen |= hit
            names = {symbol_of(sections[i]) for i in hit} - {None}
            size = sum(sections[i][1] - sections[i][0] for i in hit)
            parts.append((sorted(names), size))
    rustc = subprocess.check_output(["rustc", "-V"], text=True).strip()
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as f:
        lock = fnv1a64(f.read())
    with open(OUT, "w") as f:
        f.write("# Made by benches/startup/order.py; read by build.rs (see there).\n")
        f.write(f"# rustc: {rustc}\n# Cargo.lock fnv1a64: {lock:016x}\n")
        for title, (names, size) in zip(("start-up and idle", "with containers"), parts):
            f.write(f"# {title}: {len(names)} sections, {size // 1024} KiB\n")
            f.write("".join(n + "\n" for n in names))
    for title, (names, size) in zip(("start-up and idle", "with containers"), parts):
        print(f"{title}: {len(names)} sections, {size // 1024} KiB of code")
    print(f"wrote {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
