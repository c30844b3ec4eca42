# The Predastore image: predastore-gateway and predastore-operator (and
# predastore-node once it exists) on a small non-root base.
#
#   docker build -t ghcr.io/predastore/predastore:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -name 'predastore-*' -perm -u+x -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/predastore && chown 65532:65532 /var/lib/predastore
COPY --from=build /out/ /usr/local/bin/
# Listen on all interfaces inside the container (the binaries' own default is
# loopback) and keep data on a volume; the operator sets its own config.
ENV PREDASTORE_LISTEN=0.0.0.0:9000 \
    PREDASTORE_ADMIN_LISTEN=0.0.0.0:9001
WORKDIR /var/lib/predastore
VOLUME /var/lib/predastore
# The same uid the operator's securityContext asks for.
USER 65532:65532
EXPOSE 9000 9001
ENTRYPOINT []
CMD ["predastore-gateway"]
