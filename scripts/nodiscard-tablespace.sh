#!/usr/bin/env bash
# nodiscard-tablespace.sh gives the local PostgreSQL (scripts/services.sh) a tablespace,
# pgonce_nodiscard, on an ext4 file system mounted without the `discard` option, for
# `make bench-volume-nodiscard`.
#
# Why: this machine kind mounts / with `discard`, so every block that a TRUNCATE frees is
# trimmed on the virtual disk at once: truncating a 1 GB file takes about 0.4 s there against
# 0.07 s without it. Removing a generation of dedupe keys is exactly that, so the volume
# benchmark measures both. Most production file systems trim periodically (fstrim.timer)
# instead of online, which is what the ext4 and PostgreSQL documentation advise.
#
# The file system is a 6 GB sparse image file in /var/tmp on a loop device. Safe to run any
# number of times: it creates, mounts and registers only what is missing. Needs root, and
# prints nothing on stdout.
set -euo pipefail

IMG=/var/tmp/pgonce-nodiscard.img
MNT=/mnt/pgonce-nodiscard
SPACE=pgonce_nodiscard
PG_ROLE=dedupe
PG_PORT=${PG_PORT:-5432}

log() { echo "nodiscard: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (a loop mount)"; exit 1; }
if ! mountpoint -q "$MNT"; then
	if [ ! -f "$IMG" ]; then
		log "creating $IMG (6 GB, sparse) with ext4"
		truncate -s 6G "$IMG"
		mkfs.ext4 -q -F "$IMG"
	fi
	mkdir -p "$MNT"
	mount -o loop,nodiscard "$IMG" "$MNT"
fi
mkdir -p "$MNT/pg"
chown postgres:postgres "$MNT/pg"
chmod 700 "$MNT/pg"
if [ -z "$(runuser -u postgres -- psql -X -tA -p "$PG_PORT" -c "SELECT 1 FROM pg_tablespace WHERE spcname = '$SPACE'")" ]; then
	log "creating tablespace $SPACE in $MNT/pg"
	runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" \
		-c "CREATE TABLESPACE $SPACE OWNER $PG_ROLE LOCATION '$MNT/pg'"
fi
log "ready: tablespace $SPACE on $(findmnt -no OPTIONS "$MNT")"
