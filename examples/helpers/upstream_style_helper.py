#!/usr/bin/env python3
"""A provisioner helper written the way upstream's documentation example is.

Exec mode only (upstream's helper contract): reads one JSON request from stdin to end of
file and writes one JSON reply to stdout. It sets no `collectives`, and sets the keys
upstream's example sets that our node does not implement (`rpcauthorization`,
`plugin.choria.status_file_path`, `plugin.choria.submission.spool`,
`plugin.choria.machine.store`, `plugin.choria.registration.file_content.data` pointing at
a file that does not exist); the node must report those, never fail on them.

Environment (passed by `choria demo`): CHORIA_DEMO_BROKER_URL, CHORIA_DEMO_ISSUER_PUBLIC
(required), CHORIA_DEMO_CA_FILE (optional). Paths are under the node's own directory so
that many simulated nodes in one process do not share files.
"""

import json
import os
import sys
import time


def defer(message):
    return {"defer": True, "msg": message}


def decide(request):
    identity = request.get("identity")
    ed = request.get("ed25519_pubkey")
    if not isinstance(identity, str) or not identity:
        return defer("no identity received")
    if not isinstance(ed, dict) or not ed.get("public_key") or not ed.get("directory"):
        return defer("No ed15519 public key received")
    issuer = os.environ.get("CHORIA_DEMO_ISSUER_PUBLIC", "").strip()
    if not issuer:
        return defer("CHORIA_DEMO_ISSUER_PUBLIC is not set")
    directory = ed["directory"].rstrip("/")
    configuration = {
        "identity": identity,
        "loglevel": "info",
        "plugin.choria.server.provision": "false",
        "plugin.choria.middleware_hosts": os.environ.get(
            "CHORIA_DEMO_BROKER_URL", "nats://broker.choria.local:4222"
        ),
        "rpcauthorization": "0",
        "plugin.choria.status_file_path": directory + "/status.json",
        "plugin.choria.submission.spool": directory + "/submission",
        "plugin.security.issuer.names": "choria",
        "plugin.security.issuer.choria.public": issuer,
        # Upstream's example sets plugin.security.provider=choria, which makes the
        # provisioner put the node in `choria`; anonymous-TLS server JWT security instead
        # leaves the collectives entirely to the defaults: upstream's `mcollective`.
        "plugin.security.server_anon_tls": "true",
        "plugin.choria.security.server.token_file": directory + "/server.jwt",
        "plugin.choria.security.server.seed_file": directory + "/server.seed",
        "plugin.choria.machine.store": directory + "/machine",
        "plugin.choria.registration.file_content.data": directory + "/no-such-registration.json",
    }
    ca_file = os.environ.get("CHORIA_DEMO_CA_FILE", "").strip()
    if ca_file:
        configuration["plugin.security.choria.ca"] = ca_file
    return {
        "defer": False,
        "msg": "Done",
        "certificate": "",
        "ca": "",
        "configuration": configuration,
        "server_claims": {
            # Upstream's example sends 5 years as relative seconds; an absolute time is
            # what the provisioner reads, so send one.
            "exp": int(time.time()) + 5 * 365 * 86400,
            "permissions": {"streams": True, "submission": True},
        },
    }


def main():
    try:
        reply = decide(json.loads(sys.stdin.read()))
    except Exception as err:  # upstream's example defers on any unexpected error
        reply = defer("helper error: %s" % err)
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
