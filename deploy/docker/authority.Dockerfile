# syntax=docker/dockerfile:1
# tally-authority. Build from the repository root:
#   docker build -f deploy/docker/authority.Dockerfile -t tally-authority .
# The runtime is debian-slim rather than distroless because `init` runs
# through a shell (create the database only when it is absent) and operators
# read the bootstrap token out of the volume with `cat`.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# protox compiles the .proto files in Rust: no protoc; SQLite is bundled by sqlx.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tally-authority \
 && install -D -m 0755 target/release/tally-authority /out/tally-authority

FROM debian:bookworm-slim
# uid/gid 65532 is distroless' "nonroot": the same numbers in every Tally image.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/tally /var/lib/tally-bootstrap
COPY --from=builder /out/tally-authority /usr/local/bin/tally-authority
ENV TALLY_AUTHORITY_DB=/var/lib/tally/tally.db \
    TALLY_AUTHORITY_LISTEN=0.0.0.0:7700 \
    TALLY_AUTHORITY_METRICS_LISTEN=0.0.0.0:9700
# TALLY_AUTHORITY_KEK_FILE has no default on purpose: without a mounted KEK the authority refuses to start.
USER 65532:65532
EXPOSE 7700 9700
ENTRYPOINT ["/usr/local/bin/tally-authority"]
CMD ["serve"]
