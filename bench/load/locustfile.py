"""A realistic mix of Panal users for Locust (bench/load.sh runs it).

Each simulated person registers and signs in once, then, with think time
between steps, reads and edits their profile, looks people up and searches,
asks for friends, opens direct conversations and chats, creates matches and
lists live ones, and reads the leaderboard — the Pong platform's everyday
traffic, through the gateway like the web client. Every request's name is
its route (ids folded), so the report is per endpoint.
"""
import itertools
import os
import random
import threading
import time
import uuid

from locust import FastHttpUser, between, task

PASSWORD = "correct horse battery staple 42"
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Leslie", "Radia"]

# People registered so far (user ids), shared by every simulated user of
# this process, so profiles, friend requests and chats reach real people.
PEOPLE = []
PEOPLE_LOCK = threading.Lock()
COUNTER = itertools.count()


class Person(FastHttpUser):
    # Think time between steps; LOAD_WAIT_MAX=0 for the most requests the
    # machine can carry (the throughput run).
    wait_time = between(float(os.environ.get("LOAD_WAIT_MIN", "0.5")), float(os.environ.get("LOAD_WAIT_MAX", "2.0")))

    def on_start(self):
        n = next(COUNTER)
        self.name = f"{random.choice(NAMES)} {n}"
        email = f"load-{uuid.uuid4().hex[:12]}@example.com"
        account = {"email": email, "password": PASSWORD, "display_name": self.name}
        self.client.post("/v1/auth/register", json=account, name="/v1/auth/register")
        with self.client.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}, name="/v1/auth/login", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"login {r.status_code}")
                self.stop()
                return
            body = r.json()
        self.token = body["access_token"]
        self.auth = {"authorization": f"Bearer {self.token}"}
        # The profile exists once users has applied auth's event.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.client.get(
                "/v1/users/me", headers=self.auth, name="/v1/users/me (first)", catch_response=True
            ) as r:
                if r.status_code == 200:
                    self.id = r.json()["id"]
                    break
                if r.status_code == 503:
                    r.success()  # "profile pending" (docs/users.md): asked again below
            time.sleep(0.2)
        else:
            self.stop()
            return
        with PEOPLE_LOCK:
            PEOPLE.append(self.id)
        self.conversations = []

    def someone(self):
        with PEOPLE_LOCK:
            others = [p for p in PEOPLE if p != self.id]
        return random.choice(others) if others else None

    @task(10)
    def my_profile(self):
        self.client.get("/v1/users/me", headers=self.auth, name="/v1/users/me")

    @task(2)
    def edit_profile(self):
        bio = f"playing since {random.randint(1990, 2026)}"
        self.client.put("/v1/users/me", json={"bio": bio}, headers=self.auth, name="/v1/users/me [PUT]")

    @task(5)
    def a_profile(self):
        other = self.someone()
        if other:
            self.client.get(f"/v1/users/{other}", headers=self.auth, name="/v1/users/{id}")

    @task(3)
    def search(self):
        q = random.choice(NAMES)[:3]
        self.client.get(f"/v1/users?q={q}&limit=10", headers=self.auth, name="/v1/users?q=")

    @task(3)
    def friends(self):
        self.client.get("/v1/users/me/friends", headers=self.auth, name="/v1/users/me/friends")

    @task(1)
    def ask_a_friend(self):
        other = self.someone()
        if not other:
            return
        with self.client.post(
            "/v1/users/me/friends/requests",
            json={"user_id": other},
            headers=self.auth,
            name="/v1/users/me/friends/requests",
            catch_response=True,
        ) as r:
            # Asked already, or friends already: the answer a client expects.
            if r.status_code in (200, 201, 409):
                r.success()

    @task(1)
    def open_a_chat(self):
        other = self.someone()
        if not other:
            return
        r = self.client.post(f"/v1/chat/direct/{other}", headers=self.auth, name="/v1/chat/direct/{user}")
        if r.status_code in (200, 201):
            self.conversations.append(r.json()["id"])

    @task(4)
    def chat(self):
        if not self.conversations:
            return
        conversation = random.choice(self.conversations)
        self.client.post(
            f"/v1/chat/conversations/{conversation}/messages",
            json={"body": random.choice(["gg", "rematch?", "nice shot", "one more", "brb"])},
            headers=self.auth,
            name="/v1/chat/conversations/{id}/messages [POST]",
        )

    @task(3)
    def read_chat(self):
        if not self.conversations:
            return
        conversation = random.choice(self.conversations)
        self.client.get(
            f"/v1/chat/conversations/{conversation}/messages",
            headers=self.auth,
            name="/v1/chat/conversations/{id}/messages",
        )

    @task(3)
    def conversations_list(self):
        self.client.get("/v1/chat/conversations", headers=self.auth, name="/v1/chat/conversations")

    @task(1)
    def create_a_match(self):
        with self.client.post(
            "/v1/game/matches",
            json={"mode": "duel", "options": {"points_to_win": 5}},
            headers=self.auth,
            name="/v1/game/matches [POST]",
            catch_response=True,
        ) as r:
            if r.status_code == 201:
                # Leave it: a waiting match one walks away from.
                r.success()

    @task(2)
    def live_matches(self):
        self.client.get("/v1/game/matches?status=live&limit=20", headers=self.auth, name="/v1/game/matches")

    @task(2)
    def leaderboard(self):
        self.client.get("/v1/stats/leaderboards/duel?limit=20", headers=self.auth, name="/v1/stats/leaderboards/{mode}")
