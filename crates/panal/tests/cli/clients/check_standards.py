"""What a generic client library makes of Panal (crates/panal/tests/cli/standards.rs).

authlib validates the authorization-server metadata (RFC 8414); PyJWT verifies
a user's access token with the published JWKS and checks it as RFC 9068 says
(header `typ` at+jwt; `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti`),
signed with the algorithm auth was configured with (argument 3).
Prints what failed and exits 1, or prints `ok`.
"""

import json
import sys
import urllib.request

import jwt
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

base, token, algorithm = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)


meta = get("/.well-known/oauth-authorization-server")
try:
    AuthorizationServerMetadata(meta).validate()
except Exception as e:  # authlib says what is wrong in the message
    failures.append(f"RFC 8414 metadata: {e}")

header = jwt.get_unverified_header(token)
if header.get("alg") != algorithm:
    failures.append(f"the token is signed with {header.get('alg')!r}, not the configured {algorithm!r}")
if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
    failures.append(f"RFC 9068 §2.1: typ is {header.get('typ')!r}, not at+jwt")
keys = jwt.PyJWKClient(base + "/.well-known/jwks.json")
try:
    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[algorithm],
        audience="panal",
        issuer=meta["issuer"],
        options={"require": ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]},
    )
except Exception as e:
    failures.append(f"RFC 9068 access token: {type(e).__name__}: {e}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok")
