#!/usr/bin/env bash
# Fleet test for jobs: several pxserve containers sharing one PostgreSQL job
# store and one results folder (a bind mount standing in for a ReadWriteMany
# volume), behind a real nginx. It submits jobs through the balancer, SIGKILLs
# one container while they run, starts it again, and checks that every job
# finished with every page once, whichever container read it and whichever
# answered the polls.
#
#   deploy/fleet-jobs-test.sh                    # pxserve:latest, 3 backends, 24 jobs
#   IMAGE=pxserve:latest BACKENDS=2 JOBS=40 deploy/fleet-jobs-test.sh
#
# Needs: Docker with the image built (deploy/build-image.sh), Debian's
# postgresql (the cluster is a throwaway one on loopback), nginx (nginx-light)
# and python3. Exit status 0 when every job finished with all its pages.
set -euo pipefail
cd "$(dirname "$0")"

IMAGE=${IMAGE:-pxserve:latest}
BACKENDS=${BACKENDS:-3}
JOBS=${JOBS:-24}
LB_PORT=${LB_PORT:-18180}
FIRST_PORT=$((LB_PORT + 1))
PG_PORT=${PG_PORT:-18179}
DOCUMENT=${DOCUMENT:-../tests/data/structure/article_one_column.pdf}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
PG_BIN=${PG_BIN:-$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")}

say() { printf 'fleet-jobs-test: %s\n' "$*" >&2; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

[ "$BACKENDS" -ge 2 ] || { say "BACKENDS must be at least 2"; exit 2; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { say "no image $IMAGE: run deploy/build-image.sh"; exit 1; }
[ -x "$NGINX" ] || { say "nginx not found (apt-get install nginx-light)"; exit 1; }
[ -x "$PG_BIN/initdb" ] || { say "PostgreSQL not found (apt-get install postgresql)"; exit 1; }

work=$(mktemp -d /tmp/pxserve-fleet-jobs.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/shared" "$work/pg"
chown 10001:10001 "$work/shared" 2>/dev/null || chmod 777 "$work/shared" # the image's user
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
names=()
for i in $(seq 1 "$BACKENDS"); do names+=("pxserve-fleet-jobs-$i"); done

cleanup() {
    "$NGINX" -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true
    docker rm -f "${names[@]}" >/dev/null 2>&1 || true
    as_postgres "$PG_BIN/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

say "a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
as_postgres "$PG_BIN/initdb" -D "$work/pg/data" -U pxserve --auth=trust --no-sync >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
STORE="postgresql://pxserve@127.0.0.1:$PG_PORT/postgres"

port_of() { echo $((FIRST_PORT + $1 - 1)); }

start_backend() {  # read-only and non-root as in production; host network to reach the store
    docker run -d --name "pxserve-fleet-jobs-$1" --network host --cpus 1 --memory 3g --shm-size 256m \
        --read-only --tmpfs /tmp -v "$work/shared:/var/lib/pxserve" \
        -e PXSERVE_DATA_DIR=/var/lib/pxserve -e PXSERVE_JOB_STORE="$STORE" \
        "$IMAGE" --serve --pipeline OCR --host 127.0.0.1 --port "$(port_of "$1")" >/dev/null
}

wait_ready() {
    local deadline=$((SECONDS + 240))
    until curl -sf -o /dev/null "http://127.0.0.1:$(port_of "$1")/health"; do
        if [ $SECONDS -ge $deadline ]; then
            say "backend $1 not ready after 240 s"; docker logs --tail 20 "pxserve-fleet-jobs-$1" >&2; exit 1
        fi
        sleep 0.5
    done
}

docker rm -f "${names[@]}" >/dev/null 2>&1 || true
say "starting $BACKENDS containers of $IMAGE"
for i in $(seq 1 "$BACKENDS"); do start_backend "$i"; done
for i in $(seq 1 "$BACKENDS"); do wait_ready "$i"; done

{
    echo "worker_processes 1; pid $work/nginx.pid; error_log $work/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "  access_log off; client_max_body_size 20m;"
    for d in body proxy fastcgi uwsgi scgi; do echo "  ${d/body/client_body}_temp_path $work/$d;"; done
    echo "  upstream pxserve {"
    for i in $(seq 1 "$BACKENDS"); do echo "    server 127.0.0.1:$(port_of "$i") max_fails=1 fail_timeout=2s;"; done
    echo "  }"
    echo "  server {"
    echo "    listen 127.0.0.1:$LB_PORT;"
    echo "    location / {"
    echo "      proxy_pass http://pxserve; proxy_http_version 1.1;"
    # Result URLs are built from the Host the client used: the balancer's.
    echo "      proxy_set_header Host \$http_host;"
    echo "      proxy_next_upstream error timeout http_502 http_503; proxy_connect_timeout 1s;"
    echo "    }"
    echo "  }"
    echo "}"
} >"$work/nginx.conf"
"$NGINX" -p "$work" -c "$work/nginx.conf"
say "nginx balancing 127.0.0.1:$LB_PORT over ports $FIRST_PORT-$(port_of "$BACKENDS")"

python3 fleet_load.py jobs "http://127.0.0.1:$LB_PORT" "$DOCUMENT" "$JOBS" "$work/jobs.json" &
load=$!
victim=2
sleep 15
say "127.0.0.1:$(port_of $victim) SIGKILLed with jobs running"
docker kill --signal KILL "pxserve-fleet-jobs-$victim" >/dev/null
sleep 5
docker start "pxserve-fleet-jobs-$victim" >/dev/null
wait_ready $victim
say "127.0.0.1:$(port_of $victim) ready again"
status=0
wait $load || status=1
for name in "${names[@]}"; do
    docker logs "$name" 2>&1 | grep -E "job .*: (running|done|failed)" | sed "s/^/$name: /" | tail -3 >&2 || true
done
exit $status
