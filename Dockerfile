# luaspout's image: one statically linked binary and CA certificates; no shell, no package
# manager, no shared library. A drop-in for gliderlabs/logspout: it listens on port 80 and
# reads the Docker socket mounted at /var/run/docker.sock (or /tmp/docker.sock).
#
#   docker build -t luaspout .
#   docker run -d --name luaspout -v /var/run/docker.sock:/var/run/docker.sock:ro \
#       -v /var/lib/docker/containers:/var/lib/docker/containers:ro \
#       luaspout syslog+tcp://logs.example.com:514
#
# The `build` stage compiles with the official Rust image. Where base images cannot be pulled,
# compile on the host and hand the finished root filesystem in as an image instead, as the
# end-to-end test does (the image test in tests/e2e.rs); BuildKit then skips the `build` stage entirely:
#
#   DOCKER_BUILDKIT=1 docker build --build-arg ROOTFS=my-prepared-rootfs -t luaspout .
ARG ROOTFS=rootfs

# The binary: glibc linked in (static-pie, so address randomisation stays) and the `dist`
# profile (fat LTO); less resident memory than the dynamic release build (docs/performance.md,
# Memory). The target is named so that RUSTFLAGS apply to luaspout and not to the build scripts
# and proc-macros cargo runs on the host. docs/deploy.md gives the same build outside Docker;
# tests/run.sh builds it too, for the image test. A binary that still lists a shared library
# fails the build here: the image has none. The Rust release is the one
# benches/startup/symbols.order was made with (build.rs lays the start-up's code out by it, so an
# idle luaspout holds about half the memory); with another, the build warns and the list's names
# go unmatched: change both together.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist --locked --target "$target" \
 && mkdir -p /rootfs/etc/ssl/certs \
 && cp "target/$target/dist/luaspout" /rootfs/luaspout \
 && if ldd /rootfs/luaspout | grep /; then echo "luaspout links shared libraries" >&2; exit 1; fi \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch AS rootfs
COPY --from=build /rootfs/ /

FROM ${ROOTFS} AS prepared

FROM scratch
COPY --from=prepared / /
ENV PORT=80
# One malloc arena for all of luaspout's threads instead of one per thread: each thread's arena
# kept memory it had freed, 0.4-0.6 MiB more at the peak (docs/performance.md, Memory). Each
# thread's own malloc cache still serves most allocations without the arena's lock. Another
# value, or none, with `-e GLIBC_TUNABLES=`.
ENV GLIBC_TUNABLES=glibc.malloc.arena_max=1
EXPOSE 80
VOLUME ["/mnt/routes", "/var/lib/luaspout"]
# A check every 5 s (it is one short request), so a new task is healthy, and a Swarm rolling
# update goes on, a few seconds after it starts rather than after a 30 s first interval.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/luaspout", "health"]
ENTRYPOINT ["/luaspout"]
