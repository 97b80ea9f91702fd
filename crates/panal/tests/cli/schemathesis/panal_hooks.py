"""Schemathesis hooks for Panal's contract run (crates/panal/tests/cli/schemathesis.rs).

Every generated request carries the access token of a signed-in user (an
administrator at first, so the administrators' operations run too). Some
operations end the caller's own session (logout, revoking sessions) or account
(erasure); they must not blind the rest of the run: on a 401 schemathesis asks
here for a new token, and when the account itself is gone a new one is
registered (its profile waited for, as a client would). Sign-ins honour
auth's brute-force throttle (429 with Retry-After), which the run's own
generated failures trip.
"""

import os
import time
import uuid

import requests
import schemathesis

AUTH = os.environ["PANAL_ST_AUTH"]  # auth's own port: no gateway rate limits on sign-in
USERS = os.environ["PANAL_ST_USERS"]
PASSWORD = os.environ["PANAL_ST_PASSWORD"]
ACCOUNT = {"email": os.environ["PANAL_ST_EMAIL"]}


LAST = {}


def _login():
    # The run's own failed sign-ins (generated passwords) trip auth's
    # brute-force throttle for this address; wait as it says, as a client would.
    for _ in range(20):
        r = requests.post(
            f"{AUTH}/v1/auth/login", json={"email": ACCOUNT["email"], "password": PASSWORD}, timeout=30
        )
        LAST["login"] = f"{r.status_code} {r.text[:300]}"
        if r.status_code != 429:
            break
        time.sleep(min(float(r.headers.get("retry-after", "1")), 30))
    return r.json().get("access_token") if r.status_code == 200 else None


def _register():
    ACCOUNT["email"] = f"st-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": ACCOUNT["email"], "password": PASSWORD, "display_name": "Schemathesis"}
    r = requests.post(f"{AUTH}/v1/auth/register", json=body, timeout=30)
    LAST["register"] = f"{r.status_code} {r.text[:300]}"


def _profile_ready(token):
    """Waits while users makes the profile (503 profile-pending); False when the
    account is gone (users answers 401 "erased" or 404 while auth, which hears
    of the erasure through the bus, still signs it in)."""
    for _ in range(200):
        r = requests.get(f"{USERS}/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        LAST["profile"] = f"{r.status_code} {r.text[:300]}"
        if r.status_code == 200:
            return True
        if r.status_code in (401, 404):
            return False
        time.sleep(0.05)
    raise RuntimeError(f"users never made the profile: {LAST}")


@schemathesis.auth()
class SignedIn:
    def get(self, case, context):
        for _ in range(3):
            token = _login()
            if token is None:
                _register()
                token = _login()
            if token is None:
                raise RuntimeError(f"cannot sign in: {LAST}")
            if _profile_ready(token):
                return token
            # Erased a moment ago (the erasure reaches auth through the bus):
            # carry on as someone new.
            _register()
        raise RuntimeError(f"no usable account: {LAST}")

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
