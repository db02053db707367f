#!/usr/bin/env python3
"""What of the container can be checked without a container engine: the compose file
parsed (restart policy, stop_grace_period above the drain time, pg_isready over TCP, every
environment name one the relay knows), the Dockerfile read (built by tests/devenv.sh
install, non-root, HEALTHCHECK on a script that exists), and that HEALTHCHECK script run
under dash against a live relay (passes) and a stopped one (fails).

usage: container_check.py SOURCE_DIR SYNCRELAYD   (SYNCRELAY_TEST_PG names the test cluster)
"""
import os
import re
import select
import shutil
import subprocess
import sys
import time

import yaml

src, relayd = sys.argv[1], sys.argv[2]


def fail(msg):
    print("container_check: " + msg, file=sys.stderr)
    sys.exit(1)


def seconds(text):
    m = re.fullmatch(r"(\d+)(s|m)?", str(text))
    if not m:
        fail("cannot read the duration %r" % text)
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


# the relay's settings, from its own --help (the environment column)
helptext = subprocess.run([relayd, "--help"], capture_output=True, text=True, timeout=10).stdout
known = set(re.findall(r"^\s+--[a-z-]+\s+([A-Z_]+)\s", helptext, re.M))
if "DATABASE_URL" not in known or "SYNCRELAY_TLS_CERT" not in known:
    fail("syncrelayd --help lists no settings: %s" % helptext)

with open(os.path.join(src, "docker/compose.yaml")) as f:
    compose = yaml.safe_load(f)
relay, db = compose["services"]["relay"], compose["services"]["db"]
env = relay["environment"]
for name in env:
    if name not in known:
        fail("compose sets %s, which the relay does not know (it knows %s)" % (name, sorted(known)))
if relay.get("restart") not in ("unless-stopped", "always", "on-failure"):
    fail("the relay has no restart policy")
grace = int(env.get("SYNCRELAY_SHUTDOWN_GRACE", 30))
if seconds(relay.get("stop_grace_period", "10s")) <= grace:
    fail("stop_grace_period %s is not above the drain time of %d s" % (relay.get("stop_grace_period"), grace))
test = db["healthcheck"]["test"]
if "pg_isready" not in test or "-h" not in test:
    fail("the database healthcheck does not use pg_isready over TCP: %s" % test)
if relay["depends_on"]["db"]["condition"] != "service_healthy":
    fail("the relay does not wait for a healthy database")
for port in relay.get("ports", []):
    if not str(port).startswith("127.0.0.1:"):
        fail("the relay's plain HTTP port %s is published on every interface" % port)

with open(os.path.join(src, "docker/Dockerfile")) as f:
    docker = f.read()
if "tests/devenv.sh install" not in docker:
    fail("the image is not built by tests/devenv.sh install")
if not re.search(r"^USER (?!root)\S+", docker, re.M):
    fail("the image runs as root")
m = re.search(r"^COPY (docker/\S+) (\S+)$", docker, re.M)
hc = re.search(r"^HEALTHCHECK .*CMD \[\"([^\"]+)\"", docker, re.M)
if not m or not hc or hc.group(1) != m.group(2):
    fail("the HEALTHCHECK does not run a script copied from docker/")
script = os.path.join(src, m.group(1))
if "/dev/tcp" in open(script).read():
    fail("the HEALTHCHECK uses /dev/tcp, which dash does not have")
for tool in ("dash", "psql", "curl"):
    if not shutil.which(tool):
        fail("%s is needed for this check" % tool)

# the script against a live relay
base = os.environ.get("SYNCRELAY_TEST_PG")
if not base:
    fail("SYNCRELAY_TEST_PG is not set")
dbname = "t_container_%d" % os.getpid()
subprocess.run(["psql", base, "-qAtc", "CREATE DATABASE " + dbname], check=True, timeout=30)
envr = dict(os.environ, DATABASE_URL="%s dbname=%s" % (base, dbname), SYNCRELAY_LISTEN="127.0.0.1:0",
            SYNCRELAY_ADMIN_TOKEN="x" * 32)
proc = subprocess.Popen([relayd], env=envr, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    # the relay prints its listening line once ready, or exits
    if not select.select([proc.stdout], [], [], 30)[0]:
        fail("the relay printed no listening line within 30 s")
    line = proc.stdout.readline()
    mm = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not mm:
        fail("the relay did not start: %r" % line)
    port = mm.group(1)
    hcenv = dict(os.environ, SYNCRELAY_LISTEN="0.0.0.0:" + port)
    hcenv.pop("SYNCRELAY_TLS_CERT", None)
    t0 = time.monotonic()
    r = subprocess.run(["dash", script], env=hcenv, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        fail("the HEALTHCHECK failed against a live relay on port %s: %s" % (port, r.stderr))
    took = time.monotonic() - t0
finally:
    proc.terminate()
    proc.wait(timeout=40)
r = subprocess.run(["dash", script], env=hcenv, capture_output=True, text=True, timeout=20)
if r.returncode == 0:
    fail("the HEALTHCHECK passed with the relay stopped")
subprocess.run(["psql", base, "-qAtc", "DROP DATABASE " + dbname], timeout=30)
print("container_check: compose (%d settings known to the relay), Dockerfile, HEALTHCHECK under dash: "
      "ready in %.3f s, fails once stopped" % (len(env), took))
