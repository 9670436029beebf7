# kinesis-proxy's container image. Two stages: a builder on the official Rust image, then a
# distroless runtime (gcr.io/distroless/cc: glibc, libgcc, CA certificates and tzdata, no shell
# and no package manager, so nothing in the image but the proxy can be run or exploited; the
# binary needs nothing more, see `ldd`). deploy/README.md says how this file is tested.
#
# Build:  podman build -t kinesis-proxy .      (or docker build)
# Run:    podman run --rm -p 8080:8080 -e KINESIS_PROXY__AUTH__KEYS=name:key kinesis-proxy
#
# The bases are build arguments whose defaults are the public images; the test suite, which
# reaches no registry, passes local ones (scripts/setup-containers.sh), and may hand the builder
# a binary it already compiled (BUILDER=prebuilt). The runtime stage is the same either way.
#
# checkov:skip=CKV_DOCKER_7:the stage chosen by BUILDER is a stage of this file, not a registry image; every base is pinned by version
# checkov:skip=CKV_DOCKER_2:no HEALTHCHECK: the runtime has no shell or HTTP client to run one; orchestrators probe GET /healthz and /readyz (deploy/kubernetes)
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG PREBUILT_BASE=docker.io/library/debian:bookworm-slim
# `compile` builds from source; `prebuilt` takes .prebuilt/kinesis-proxy from the context.
ARG BUILDER=compile

# --- builder: compiles the release binary --------------------------------------------------------
FROM ${RUST_IMAGE} AS compile
WORKDIR /src
# No debug info in the shipped binary (the repository's release profile keeps it for profiling:
# 200 MB instead of about 25); symbol names stay, so backtraces remain readable.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
# Dependencies first, against stub sources: this layer stays cached until Cargo.toml or
# Cargo.lock change, so an edit to src/ recompiles only the proxy itself.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/load tests/api \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for f in benches/hot_path.rs benches/aggregation.rs benches/spool.rs benches/load/main.rs tests/api/main.rs; do echo 'fn main() {}' > "$f"; done \
    && cargo build --release --locked --bin kinesis-proxy \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin kinesis-proxy \
    && mkdir -p /out/state/spool \
    && cp target/release/kinesis-proxy /out/kinesis-proxy

# --- builder: a binary compiled outside (the test suite's) ------------------------------------
FROM ${PREBUILT_BASE} AS prebuilt
COPY .prebuilt/kinesis-proxy /out/kinesis-proxy
RUN mkdir -p /out/state/spool

FROM ${BUILDER} AS builder

# --- runtime -------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
# Where the image was built from; set it in your CI (--build-arg SOURCE_URL=<repository URL>).
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="kinesis-proxy" \
      org.opencontainers.image.description="A fast, safe HTTP front door for Amazon Kinesis Data Streams" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/kinesis-proxy /usr/local/bin/kinesis-proxy
COPY config.toml /etc/kinesis-proxy/config.toml
# The state directory and the spool in it belong to the runtime user, so a named volume mounted
# on the spool starts out writable by it.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/kinesis-proxy
# 65532 is distroless' `nonroot`; numeric, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /var/lib/kinesis-proxy
# config.toml's spool.dir is "spool", relative to the working directory.
VOLUME ["/var/lib/kinesis-proxy/spool"]
EXPOSE 8080
# SIGTERM drains (readiness 503 first, then the listener closes, queues drain); SIGHUP is not
# an exit signal.
STOPSIGNAL SIGTERM
# A smoke test inside the build: the binary runs on this base (exec form: no shell here).
RUN ["/usr/local/bin/kinesis-proxy", "--version"]
ENTRYPOINT ["/usr/local/bin/kinesis-proxy", "--config", "/etc/kinesis-proxy/config.toml"]
