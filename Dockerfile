# syntax=docker/dockerfile:1
#
# The image stage containers and in-cluster cron jobs run on Kubernetes:
# `bodywork stage REPO BRANCH STAGE` (stages) and `bodywork workflow ...`
# (cron jobs). A static bodywork binary on a slim Python base with git and uv.
#
#   docker build -t ghcr.io/bodywork-ml/bodywork-rs:0.1.0 .
#
# Projects naming the legacy image `bodyworkml/bodywork-core` get this one
# (see crates/bodywork-kube); `bodywork workflow --image IMAGE` picks another.

ARG RUST_VERSION=1.95
ARG PYTHON_VERSION=3.11

# ---- build: a fully static (musl) binary --------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETARCH
# musl-tools: the C compiler for the bundled SQLite and ring (rustls' crypto).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bodywork-cli --target "$(cat /rust-target)" \
 && install -D -m 0755 "target/$(cat /rust-target)/release/bodywork" /out/bodywork

# ---- run: Python for the stages, git to fetch projects, uv to install ----
FROM python:${PYTHON_VERSION}-slim-bookworm
# git + openssh-client: fetch https and ssh repositories (private ones with
# the ssh-github-private-key secret); ca-certificates: https.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir "uv>=0.13.9,<0.14" \
 && useradd --create-home --uid 1000 bodywork
COPY --from=build /out/bodywork /usr/local/bin/bodywork
RUN ln -s bodywork /usr/local/bin/bw
USER bodywork
WORKDIR /home/bodywork
ENV PYTHONUNBUFFERED=1 \
    BODYWORK_HOME=/home/bodywork/.bodywork
LABEL org.opencontainers.image.source="https://github.com/bodywork-ml/bodywork-rs" \
      org.opencontainers.image.description="bodywork: stages and workflow controller for the Kubernetes runtime" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["bodywork", "--help"]
