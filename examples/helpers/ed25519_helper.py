#!/usr/bin/env python3
"""Example Choria provisioner helper for the jwt + ed25519 (Organisation Issuer) flow.

Standard library only. Speaks the upstream helper contract: one JSON request on stdin,
one JSON reply on stdout. With --persistent it serves the provisioner's persistent mode
instead: one JSON request per line in, one JSON reply per line out, until stdin closes.

Environment:
  CHORIA_DEMO_BROKER_URL     broker URL written into every node's configuration
                             (default nats://broker.example.net:4222)
  CHORIA_DEMO_ISSUER_PUBLIC  hex ed25519 public key of the organisation issuer (required)
  CHORIA_DEMO_CA_FILE        CA bundle path on the nodes, to verify the broker (optional)
  CHORIA_DEMO_VALIDITY_DAYS  server token lifetime in days (default 365)

Nothing is written to disk: the request carries the provisioning secret (cht).
"""

import json
import os
import re
import sys
import time

HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$")


def defer(message):
    return {"defer": True, "msg": message}


def decide(request):
    """Returns the reply for one request; defers on anything it cannot vouch for."""
    if not isinstance(request, dict):
        return defer("request is not a JSON object")
    identity = request.get("identity")
    if not isinstance(identity, str) or not IDENTITY.match(identity):
        return defer("missing or unusable identity")

    ed = request.get("ed25519_pubkey")
    if not isinstance(ed, dict):
        return defer("no ed25519 public key: enable features.ed25519 in the provisioner")
    public_key = ed.get("public_key")
    directory = ed.get("directory")
    if not isinstance(public_key, str) or not HEX_KEY.match(public_key):
        return defer("ed25519 public key is not 64 hex characters")
    if not isinstance(directory, str) or not directory.startswith("/"):
        return defer("node did not report an absolute configuration directory")

    if not isinstance(request.get("jwt"), dict):
        return defer("no verified provisioning token: enable features.jwt")

    try:
        inventory = json.loads(request.get("inventory") or "{}")
    except ValueError:
        return defer("inventory is not JSON")
    if not isinstance(inventory, dict):
        return defer("inventory is not a JSON object")

    issuer = os.environ.get("CHORIA_DEMO_ISSUER_PUBLIC", "").strip()
    if not HEX_KEY.match(issuer):
        return defer("CHORIA_DEMO_ISSUER_PUBLIC is not set to a hex ed25519 public key")
    broker = os.environ.get("CHORIA_DEMO_BROKER_URL", "nats://broker.example.net:4222")
    try:
        days = int(os.environ.get("CHORIA_DEMO_VALIDITY_DAYS", "365"))
    except ValueError:
        days = 365

    directory = directory.rstrip("/")
    configuration = {
        "identity": identity,
        "loglevel": "info",
        "collectives": "choria",
        "main_collective": "choria",
        "plugin.choria.server.provision": "false",
        "plugin.choria.middleware_hosts": broker,
        "plugin.choria.use_srv": "false",
        "plugin.security.provider": "choria",
        "plugin.security.choria.token_file": directory + "/server.jwt",
        "plugin.security.choria.seed_file": directory + "/server.seed",
        "plugin.security.issuer.names": "choria",
        "plugin.security.issuer.choria.public": issuer,
    }
    ca_file = os.environ.get("CHORIA_DEMO_CA_FILE", "").strip()
    if ca_file:
        configuration["plugin.security.choria.ca"] = ca_file
    return {
        "defer": False,
        "msg": "configured by ed25519_helper.py",
        "configuration": configuration,
        "server_claims": {
            # An absolute time, as upstream expects (a relative number here would be a
            # date in 1970).
            "exp": int(time.time()) + days * 86400,
            "collectives": ["choria"],
            "permissions": {"submission": True},
        },
    }


def answer(text):
    try:
        request = json.loads(text)
    except ValueError as err:
        return defer("request is not JSON: %s" % err)
    try:
        return decide(request)
    except Exception as err:  # a helper bug defers the node instead of failing the pass
        return defer("helper error: %s" % err)


def main(argv):
    if "--persistent" in argv[1:]:
        for line in sys.stdin:
            if not line.strip():
                continue
            sys.stdout.write(json.dumps(answer(line)) + "\n")
            sys.stdout.flush()
        return 0
    sys.stdout.write(json.dumps(answer(sys.stdin.read())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
