#!/usr/bin/env bash
# Fleet test: several pxserve containers behind a real nginx load balancer,
# all on loopback. Under steady load it SIGKILLs one container, starts it
# again, then stops another gracefully (docker stop), and reports what the
# clients saw: errors (there should be none beyond what nginx retries),
# latency, and each backend's share of answers between the events, so you
# can see traffic return to a container once it is ready again.
#
#   deploy/fleet-test.sh                    # pxserve:latest, 3 backends, 75 s
#   IMAGE=pxserve:latest BACKENDS=2 DURATION=90 CONCURRENCY=8 deploy/fleet-test.sh
#
# Needs: Docker with the image built (deploy/build-image.sh), nginx (Debian's
# nginx-light is enough), curl and python3. Exit status 0 when no client saw
# an error and every restarted backend served again.
set -euo pipefail
cd "$(dirname "$0")"

IMAGE=${IMAGE:-pxserve:latest}
BACKENDS=${BACKENDS:-3}
DURATION=${DURATION:-75}
CONCURRENCY=${CONCURRENCY:-8}
LB_PORT=${LB_PORT:-18080}
FIRST_PORT=$((LB_PORT + 1))
PIPELINE=${PIPELINE:-image_classification}
ROUTE=${ROUTE:-/image-classification}
PHOTO=${PHOTO:-../tests/data/chelsea.jpg}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

say() { printf 'fleet-test: %s\n' "$*" >&2; }
now() { date +%s.%N; }

[ "$BACKENDS" -ge 2 ] || { say "BACKENDS must be at least 2"; exit 2; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { say "no image $IMAGE: run deploy/build-image.sh"; exit 1; }
[ -x "$NGINX" ] || { say "nginx not found (apt-get install nginx-light)"; exit 1; }

work=$(mktemp -d /tmp/pxserve-fleet.XXXXXX)
chmod 755 "$work"
names=()
for i in $(seq 1 "$BACKENDS"); do names+=("pxserve-fleet-$i"); done

cleanup() {
    "$NGINX" -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true
    docker rm -f "${names[@]}" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

port_of() { echo $((FIRST_PORT + $1 - 1)); }

start_backend() {  # a container as it runs in production: read-only, non-root, rings in /dev/shm
    docker run -d --name "pxserve-fleet-$1" --cpus 1 --memory 2g --shm-size 256m \
        --read-only --tmpfs /tmp -p "127.0.0.1:$(port_of "$1"):8080" \
        "$IMAGE" --serve --pipeline "$PIPELINE" >/dev/null
}

wait_ready() {  # poll /health until 200, at most 180 s
    local deadline=$((SECONDS + 180))
    until curl -sf -o /dev/null "http://127.0.0.1:$(port_of "$1")/health"; do
        if [ $SECONDS -ge $deadline ]; then
            say "backend $1 not ready after 180 s"; docker logs --tail 20 "pxserve-fleet-$1" >&2; exit 1
        fi
        sleep 0.2
    done
}

docker rm -f "${names[@]}" >/dev/null 2>&1 || true
say "starting $BACKENDS containers of $IMAGE"
for i in $(seq 1 "$BACKENDS"); do start_backend "$i"; done
for i in $(seq 1 "$BACKENDS"); do wait_ready "$i"; done
say "all ready"

{
    echo "worker_processes 1; pid $work/nginx.pid; error_log $work/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "  access_log off; client_max_body_size 20m;"
    for d in body proxy fastcgi uwsgi scgi; do echo "  ${d/body/client_body}_temp_path $work/$d;"; done
    echo "  upstream pxserve {"
    for i in $(seq 1 "$BACKENDS"); do
        echo "    server 127.0.0.1:$(port_of "$i") max_fails=1 fail_timeout=2s;"
    done
    echo "    keepalive 32;"
    echo "  }"
    echo "  server {"
    echo "    listen 127.0.0.1:$LB_PORT;"
    echo "    location / {"
    echo "      proxy_pass http://pxserve;"
    echo "      proxy_http_version 1.1; proxy_set_header Connection \"\";"
    # A dead backend refuses or resets; a loading or draining one answers 503.
    # Inference has no side effects, so retrying a POST elsewhere is safe.
    echo "      proxy_next_upstream error timeout http_502 http_503 non_idempotent;"
    echo "      proxy_next_upstream_tries $BACKENDS; proxy_connect_timeout 1s; proxy_read_timeout 65s;"
    echo "      add_header X-Upstream \$upstream_addr always;"
    echo "    }"
    echo "  }"
    echo "}"
} >"$work/nginx.conf"
"$NGINX" -p "$work" -c "$work/nginx.conf"
say "nginx balancing 127.0.0.1:$LB_PORT over ports $FIRST_PORT-$(port_of "$BACKENDS")"

python3 fleet_load.py load "http://127.0.0.1:$LB_PORT$ROUTE" "$PHOTO" "$DURATION" "$CONCURRENCY" \
    "$work/records.json" &
load=$!
events="{"
mark() { events+="\"$1\": $(now),"; say "$1"; }

victim=2
sleep 10
mark "127.0.0.1:$(port_of $victim) SIGKILLed"
docker kill --signal KILL "pxserve-fleet-$victim" >/dev/null
sleep 8
mark "127.0.0.1:$(port_of $victim) restarted"
docker start "pxserve-fleet-$victim" >/dev/null
wait_ready $victim
mark "127.0.0.1:$(port_of $victim) ready"

drained=1
sleep 8
mark "127.0.0.1:$(port_of $drained) docker stop"
started_stop=$SECONDS
docker stop --time 45 "pxserve-fleet-$drained" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "pxserve-fleet-$drained")
say "docker stop: exit code $code after $((SECONDS - started_stop)) s"
drain_line=$(docker logs "pxserve-fleet-$drained" 2>&1 | grep -E "draining|stopped" | tail -2 | tr '\n' ' ')
say "its last lines: $drain_line"
docker start "pxserve-fleet-$drained" >/dev/null
wait_ready $drained
mark "127.0.0.1:$(port_of $drained) ready"

wait $load
echo "${events%,}}" >"$work/events.json"
status=0
python3 fleet_load.py report "$work/records.json" "$work/events.json" || status=1
if [ "$code" != 0 ]; then say "docker stop ended with exit code $code, not 0"; status=1; fi
exit $status
