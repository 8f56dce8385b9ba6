# syntax=docker/dockerfile:1
#
# The image stage containers and in-cluster cron jobs run on Kubernetes:
# `bodywork stage REPO BRANCH STAGE` (stages) and `bodywork workflow ...`
# (cron jobs). A static bodywork binary on Debian slim with git, a C/C++
# toolchain for source distributions, uv, and uv-managed CPython 3.8 to 3.13
# (PYTHON_VERSIONS; `python3` is DEFAULT_PYTHON), so that projects pinned to
# packages that have wheels only for older (or newer) Pythons install.
#
#   docker build -t ghcr.io/bodywork-ml/bodywork-rs:0.1.0 .
#
# NOT BUILT WHERE IT IS WRITTEN: the machine this repository is developed and
# tested on has no Docker engine, so this file has never been built there.
# What is checked there instead (README, "The image"):
# - hadolint: no findings (`scripts/lint-image`, run by `.ci/run`);
# - the run stage's own steps are `scripts/image-root`, which the RUN below
#   calls; crates/bodywork-cli/tests/it/image.rs runs the same script into a
#   throwaway root under target/ with this file's ENV, then runs stage pods'
#   command (as the generated manifests give it) from that root;
# - `scripts/check-image-requirements`: every example project's requirements,
#   and those of the seed's repository, resolve for PYTHON_VERSIONS on this
#   image's platform.
# .github/workflows/image.yml builds and publishes it.
#
# Projects naming the legacy image `bodyworkml/bodywork-core` get this one
# (see crates/bodywork-kube); `bodywork workflow --image IMAGE` picks another.

ARG RUST_VERSION=1.95
# uv's own image, for its static binary: the release bodywork is tested with
# (crates/bodywork-pyenv's UV_REQUIREMENT admits it; tests/it/image.rs checks).
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- build: a fully static (musl) binary --------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETARCH
# musl-tools: the C compiler for the bundled SQLite and ring (rustls' crypto).
# Debian's versions are not pinned: bookworm's security updates replace
# them in the archive, so a pinned version stops building within weeks; the
# base image's tag fixes the release.
# hadolint ignore=DL3008
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
 && install -D -m 0755 "target/$(cat /rust-target)/release/bodywork" /out/bodywork \
 && install -D -m 0755 "target/$(cat /rust-target)/release/bodywork-reap" /out/bodywork-reap

# ---- run: Pythons for the stages, git to fetch projects, uv to install ----
FROM debian:bookworm-slim
# git + openssh-client: fetch https and ssh repositories (private ones with
# the ssh-github-private-key secret); ca-certificates: https;
# build-essential: packages that have no wheel for the stage's Python are
# built from their source distributions. Not pinned, for the reason given in
# the build stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      git openssh-client ca-certificates build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 bodywork \
 && useradd --no-log-init --create-home --uid 1000 --gid 1000 bodywork
COPY --from=uv /uv /uvx /usr/local/bin/
COPY --from=build /out/bodywork /out/bodywork-reap /usr/local/bin/
COPY scripts/image-root /usr/local/lib/bodywork/image-root
# The environment of every container, and of scripts/image-root below:
# uv-managed Pythons live in UV_PYTHON_INSTALL_DIR (where uv looks for them:
# `uv python find 3.9`, `uv venv --python 3.9`), their `python3.X` (and
# `python3`, `python`: DEFAULT_PYTHON) in UV_PYTHON_BIN_DIR, first on PATH.
# Both belong to the image's user, so that a uv allowed to download (where
# the cluster is online) can add a Python at run time.
ENV PATH=/opt/bodywork/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    UV_PYTHON_INSTALL_DIR=/opt/bodywork/python \
    UV_PYTHON_BIN_DIR=/opt/bodywork/bin \
    PYTHONUNBUFFERED=1 \
    BODYWORK_HOME=/home/bodywork/.bodywork
ARG PYTHON_VERSIONS="3.8 3.9 3.10 3.11 3.12 3.13"
ARG DEFAULT_PYTHON=3.11
RUN /usr/local/lib/bodywork/image-root --pythons "${PYTHON_VERSIONS}" \
      --default "${DEFAULT_PYTHON}" --owner 1000:1000 \
 && ln -s bodywork /usr/local/bin/bw
USER 1000:1000
WORKDIR /home/bodywork
LABEL org.opencontainers.image.source="https://github.com/bodywork-ml/bodywork-rs" \
      org.opencontainers.image.description="bodywork: stages and workflow controller for the Kubernetes runtime" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["bodywork", "--help"]
