"""Schemathesis hooks for Panal's contract run (crates/panal/tests/cli/schemathesis.rs).

Every generated request carries the access token of a signed-in user (an
administrator at first, so the administrators' operations run too). Some
operations end the caller's own session (logout, revoking sessions) or account
(erasure); they must not blind the rest of the run: on a 401 schemathesis asks
here for a new token, and when the account itself is gone a new one is
registered (its profile waited for, as a client would).
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


def _login():
    r = requests.post(
        f"{AUTH}/v1/auth/login", json={"email": ACCOUNT["email"], "password": PASSWORD}, timeout=30
    )
    return r.json().get("access_token") if r.status_code == 200 else None


def _register():
    ACCOUNT["email"] = f"st-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": ACCOUNT["email"], "password": PASSWORD, "display_name": "Schemathesis"}
    requests.post(f"{AUTH}/v1/auth/register", json=body, timeout=30)


def _wait_for_profile(token):
    for _ in range(200):
        r = requests.get(f"{USERS}/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if r.status_code == 200:
            return
        time.sleep(0.05)
    raise RuntimeError("users never made the profile")


@schemathesis.auth()
class SignedIn:
    def get(self, case, context):
        token = _login()
        if token is None:
            _register()
            token = _login()
        if token is None:
            raise RuntimeError("cannot sign in")
        _wait_for_profile(token)
        return token

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
