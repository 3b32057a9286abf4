# syntax=docker/dockerfile:1
# logbook's image: built in a full Rust image, run from a small Debian one as a non-root user.
#   docker build -t logbook .            (docker-compose.yml builds it for you)
# The build needs the network (crates.io); the test suite never builds this file.

FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin logbook \
    && install -m 0755 target/release/logbook /usr/local/bin/logbook

FROM debian:bookworm-slim
# curl only for the health check; ca-certificates for https ClickHouse URLs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/logbook --create-home logbook
COPY --from=build /usr/local/bin/logbook /usr/local/bin/logbook
USER 10001:10001
WORKDIR /var/lib/logbook
# Listen on every interface inside the container; the queue lives on the volume.
ENV LOGBOOK_SERVER_LISTEN=0.0.0.0:8080 \
    LOGBOOK_INGEST_GRPC_LISTEN=0.0.0.0:4317 \
    LOGBOOK_INGEST_HTTP_LISTEN=0.0.0.0:4318 \
    LOGBOOK_QUEUE_PATH=/var/lib/logbook/queue
# mimalloc returns freed pages to the OS at once instead of after 1 s, and commits arena memory
# as it is used rather than all at once: steady-load peak RSS 103-106 MiB instead of 152-159
# with the first alone and 201-214 with neither, as measured before this change
# (docs/benchmarks.md). logbook re-runs itself with these when they are unset; set here, it
# starts without that step.
ENV MIMALLOC_PURGE_DELAY=0 \
    MIMALLOC_ARENA_EAGER_COMMIT=0
VOLUME ["/var/lib/logbook"]
EXPOSE 4317 4318 8080
# /healthz: the process serves; readiness (/readyz) is what load balancers should use.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["logbook"]
CMD ["serve"]
