# luaspout's image: the binary, the few shared libraries it links, CA certificates; no shell,
# no package manager. A drop-in for gliderlabs/logspout: it listens on port 80 and reads the
# Docker socket mounted at /var/run/docker.sock (or /tmp/docker.sock).
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

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && mkdir -p /rootfs/etc/ssl/certs \
 && cp target/release/luaspout /rootfs/luaspout \
 && ldd target/release/luaspout | grep -o '/[^ ]*' | xargs -I{} cp --parents -L {} /rootfs/ \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch AS rootfs
COPY --from=build /rootfs/ /

FROM ${ROOTFS} AS prepared

FROM scratch
COPY --from=prepared / /
ENV PORT=80
EXPOSE 80
VOLUME ["/mnt/routes", "/var/lib/luaspout"]
# A check every 5 s (it is one short request), so a new task is healthy, and a Swarm rolling
# update goes on, a few seconds after it starts rather than after a 30 s first interval.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/luaspout", "health"]
ENTRYPOINT ["/luaspout"]
