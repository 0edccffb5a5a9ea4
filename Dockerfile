# syntax=docker/dockerfile:1
# mcpfleet controller image: build with the Swift toolchain, run on a slim Debian with only the
# shared libraries mcpfleet links (libyaml, libcurl, SQLite) plus git and CA certificates.
#
#   docker build -t ghcr.io/YOU/mcpfleet:0.1.0 .
#   docker build --build-arg SWIFT_VERSION=6.2 ...        # another 6.x toolchain
ARG SWIFT_VERSION=6.3
ARG DEBIAN_RELEASE=bookworm

FROM swift:${SWIFT_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libyaml-dev libcurl4-openssl-dev libsqlite3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not refetch them.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
COPY Sources Sources
# The Swift runtime and Foundation are linked statically; the system C libraries stay shared.
RUN swift build -c release --product mcpfleet --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/mcpfleet" /out/mcpfleet

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libyaml-0-2 libcurl4 libsqlite3-0 libstdc++6 ca-certificates git tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mcpfleet /usr/local/bin/mcpfleet
RUN install -d -o 65532 -g 65532 /var/lib/mcpfleet
# A numeric non-root user, so Kubernetes can verify runAsNonRoot.
USER 65532:65532
WORKDIR /var/lib/mcpfleet
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/mcpfleet"]
CMD ["--help"]
