# syntax=docker/dockerfile:1
# mediajob-operator container image: the binary only, on a distroless base, as a non-root user.
# Only the operator package is built (`-p mediajob-operator`): the emulator, the API double and the
# S3 server are other workspace members and are neither compiled nor shipped.
#   docker build -t mediajob-operator:0.1.0 .
# Builder and runtime are both Debian 12 (bookworm), so the glibc the binary links against is there.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep crates and compiled dependencies between builds (BuildKit); the binary is
# copied out of the cached target directory because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mediajob-operator --bin mediajob-operator \
 && install -D -m 0755 target/release/mediajob-operator /out/mediajob-operator

# cc: glibc and libgcc, nothing else (no shell, no package manager). :nonroot runs as 65532:65532,
# the user the Helm chart and deploy/ also require.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mediajob-operator /mediajob-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/mediajob-operator"]
CMD ["run"]
