#!/bin/sh
# The image's HEALTHCHECK (POSIX sh, so dash runs it): GET /readyz on the relay's own port,
# over https when SYNCRELAY_TLS_CERT is set (-k: the certificate names the public host, not
# 127.0.0.1). Exit 0 when the relay is ready, 1 otherwise.
port=${SYNCRELAY_LISTEN:-0.0.0.0:8080}
port=${port##*:}
scheme=http
[ -n "${SYNCRELAY_TLS_CERT:-}" ] && scheme=https
exec curl -fsS -k -o /dev/null --max-time 5 "$scheme://127.0.0.1:$port/readyz"
