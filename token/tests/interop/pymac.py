"""pymacaroons side of the interop test (token/tests/interop_pymacaroons.rs).

Reads one JSON request on stdin, a list of operations, and writes one JSON
list of results on stdout, in order. Binary values (keys, identifiers, caveat
ids, nonces, V2 bytes, signatures) travel as lowercase hex; tokens as text.

Operations:
  {"op": "mint", "key", "identifier", "location", "caveats"}  -> token
  {"op": "attenuate", "token", "caveats"}                      -> token
  {"op": "bind", "root", "discharge"}                          -> token (prepare_for_request)
  {"op": "inspect", "token"}                                   -> fields as pymacaroons reads them
  {"op": "verify", "token", "discharges", "key", "satisfy"}    -> verified true/false + error

A caveat is a string (first-party predicate) or an object
{"location", "key", "cid", "nonce"} (third-party; nonce null = random).
A token result is {"token": serialize(), "v2": hex of the V2 bytes, "signature": hex}.

If pymacaroons 0.13.0 cannot be imported, prints {"fatal": why} and exits 3.
"""

import binascii
import json
import sys

EXPECTED_VERSION = "0.13.0"
MISSING = 3

try:
    import pymacaroons
    from pymacaroons import MACAROON_V2, Macaroon, Verifier
    from pymacaroons.serializers.binary_serializer import BinarySerializer
except ImportError as e:
    json.dump({"fatal": "cannot import pymacaroons with %s: %s" % (sys.executable, e)}, sys.stdout)
    sys.exit(MISSING)

if getattr(pymacaroons, "__version__", None) != EXPECTED_VERSION:
    json.dump({"fatal": "%s has pymacaroons %s, not %s" % (
        sys.executable, getattr(pymacaroons, "__version__", "?"), EXPECTED_VERSION)}, sys.stdout)
    sys.exit(MISSING)

TALLY_PREFIX = "tly_"


def unhex(s):
    return None if s is None else binascii.unhexlify(s)


def tohex(b):
    return None if b is None else binascii.hexlify(b).decode("ascii")


def load(text):
    # pymacaroons decodes everything as url-safe base64, so Tally's `tly_`
    # prefix would be read as payload: it is the one thing a holder strips.
    if text.startswith(TALLY_PREFIX):
        text = text[len(TALLY_PREFIX):]
    return Macaroon.deserialize(text)


def add_caveats(m, caveats):
    for c in caveats:
        if isinstance(c, str):
            m.add_first_party_caveat(c)
        else:
            m.add_third_party_caveat(c["location"], unhex(c["key"]), unhex(c["cid"]), nonce=unhex(c.get("nonce")))
    return m


def token(m):
    return {
        "token": m.serialize(),
        "v2": tohex(BinarySerializer().serialize_raw(m)),
        "signature": m.signature,
    }


def mint(req):
    # Binary identifiers go in as bytes; V2 must be asked for (V1 is the default).
    m = Macaroon(location=req.get("location"), identifier=unhex(req["identifier"]), key=unhex(req["key"]),
                 version=MACAROON_V2)
    return token(add_caveats(m, req.get("caveats", [])))


def attenuate(req):
    return token(add_caveats(load(req["token"]), req["caveats"]))


def bind(req):
    return token(load(req["root"]).prepare_for_request(load(req["discharge"])))


def inspect(req):
    m = load(req["token"])
    return {
        "version": m.version,
        "location": m.location,
        "identifier": tohex(m.identifier_bytes),
        "caveats": [
            {"cid": tohex(c.caveat_id_bytes), "vid": tohex(c.verification_key_id), "location": c.location}
            for c in m.caveats
        ],
        "signature": m.signature,
    }


def verify(req):
    try:
        root = load(req["token"])
        discharges = [load(d) for d in req.get("discharges", [])]
        v = Verifier()
        for predicate in req.get("satisfy", []):
            v.satisfy_exact(predicate)
        v.verify(root, unhex(req["key"]), discharge_macaroons=discharges)
    except Exception as e:  # the class is the verdict the test checks
        return {"verified": False, "error": "%s: %s" % (type(e).__name__, e)}
    return {"verified": True}


OPS = {"mint": mint, "attenuate": attenuate, "bind": bind, "inspect": inspect, "verify": verify}


def main():
    results = []
    for req in json.load(sys.stdin):
        try:
            out = OPS[req["op"]](req)
            out["ok"] = True
        except Exception as e:
            out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        results.append(out)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
