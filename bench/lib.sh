# What the benchmarks share: waiting for a server, one wrk measurement, and a mailroom server
# with an API key. Sourced by bench/run and bench/send, with $work (a scratch directory),
# $threads, $connections, $duration and the pids array set.

# Waits until HOST:PORT accepts connections.
wait_up() {
  local host=${1%:*} port=${1##*:}
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

# Prints "requests/s p50_ms p99_ms" for one wrk run against URL (with HEADER, and a wrk Lua
# SCRIPT, if given). Fails when any answer was not a success: a refusal is not a measurement.
measure() {
  local extra=()
  [ -n "${2:-}" ] && extra+=(-H "$2")
  [ -n "${3:-}" ] && extra+=(-s "$3")
  wrk -t"$threads" -c"$connections" -d2s "${extra[@]}" "$1" >/dev/null  # warm-up
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "${extra[@]}" "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { failed = $NF }
    END { if (failed > 0) { print "wrk saw " failed " failed answers" > "/dev/stderr"; exit 1 }
          printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

# A server with an API key on a fresh installation: sign up (the code from the outbox), create
# a key, and lift the plan's per-key limits and quota so that the runs measure the path, not
# the refusals. $1: a name for the server; $2: its address; $3: a database URL, or nothing for
# SQLite in the data dir. The key (of the scopes KEYED_SCOPES, a JSON list) is left in
# $work/key-NAME, the session's cookie in $work/cookie-NAME; its log (warnings) in $work/log-NAME.
keyed() {
  local data="$work/data-keyed-$1" base="http://$2" args=()
  [ -n "${3:-}" ] && args=(--database-url "$3")
  [ -n "${dns_server:-}" ] && args+=(--verify-dns-server "$dns_server")
  MAILROOM_HTTP_LISTEN="$2" MAILROOM_LOG_FILTER=warn MAILROOM_LOG_FORMAT=json \
    MAILROOM_DATA_DIR="$data" target/release/mailroom serve --http-auth-rate-limit 1000 \
    "${args[@]}" >"$work/log-$1" 2>&1 & pids+=($!)
  wait_up "$2"
  local email=bench@example.test password="correct horse battery staple"
  curl -fsS "$base/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" >/dev/null
  local code=""
  for _ in $(seq 50); do
    code=$(grep -hoE 'Subject: Your mailroom code: [0-9]{6}' "$data"/outbox/*.eml 2>/dev/null | grep -oE '[0-9]{6}$' | head -1) && [ -n "$code" ] && break
    sleep 0.1
  done
  local cookie
  cookie=$(curl -fsS -D - -o /dev/null "$base/v1/auth/confirm-email" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"code\":\"$code\"}" | grep -i '^set-cookie: __Host-mailroom_session=' | sed -E 's/^[^:]+: ([^;]+);.*/\1/')
  local key
  key=$(curl -fsS "$base/v1/api-keys" -H 'content-type: application/json' -H "cookie: $cookie" \
    -H "origin: $base" -d "{\"name\":\"bench\",\"scopes\":${KEYED_SCOPES:-[\"audit:read\",\"verify\"]}}" | sed -E 's/.*"key":"([^"]+)".*/\1/')
  local lift="UPDATE plans SET key_requests_per_minute = 6000000, key_requests_per_day = 1000000000, verifications_per_month = 1000000000, emails_per_month = 1000000000"
  if [ -n "${3:-}" ]; then psql -q "$3" -c "$lift"; else sqlite3 "$data/mailroom.db" "$lift"; fi
  echo "$key" > "$work/key-$1"
  echo "$cookie" > "$work/cookie-$1"
}

