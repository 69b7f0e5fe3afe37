# syntax=docker/dockerfile:1

# One image, four binaries: `producer`, `consumer`, `query` (the read side) and
# the operator tool `pubsubkafka` (DLQ replay, lag exporter). Pick one with the
# container command.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# librdkafka is compiled from source by rdkafka-sys.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        g++ gcc libssl-dev make perl pkg-config python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The cache mounts keep the registry and the compiled dependencies between
# builds; the binaries are copied out of the cached target directory. The
# release profile builds with line tables; each binary's debug info goes to
# /out/debug/<bin>.debug, and the image gets the stripped binary (about an
# eighth of the size) with a .gnu_debuglink naming that file.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p producer -p consumer -p query -p ops \
 && mkdir -p /out/bin /out/debug \
 && for bin in producer consumer query pubsubkafka; do \
        objcopy --only-keep-debug "target/release/$bin" "/out/debug/$bin.debug" \
     && strip --strip-debug --strip-unneeded -o "/out/bin/$bin" "target/release/$bin" \
     && objcopy --add-gnu-debuglink="/out/debug/$bin.debug" "/out/bin/$bin" \
     && chmod 0755 "/out/bin/$bin"; \
    done


# The debug info split off the shipped binaries, for symbolising a crash or a
# profile: docker build --target debug-info --output type=local,dest=debug-info .
FROM scratch AS debug-info
COPY --from=builder /out/debug/ /


FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pubsubkafka \
 && useradd --system --uid 10001 --gid pubsubkafka --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pubsubkafka

COPY --from=builder /out/bin/ /usr/local/bin/
COPY LICENSE /usr/share/doc/pubsubkafka/LICENSE

LABEL org.opencontainers.image.title="pubsubkafka" \
      org.opencontainers.image.description="Kafka order pipeline: producer, consumer, query and the pubsubkafka operator tool" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
# producer API, consumer ops port, query API, lag exporter
EXPOSE 8080 8081 8082 9090
CMD ["producer"]
