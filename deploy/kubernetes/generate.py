#!/usr/bin/env python3
"""Writes Panal's Kubernetes manifests (kustomize) from one table of services.

    python3 deploy/kubernetes/generate.py          # rewrite the YAML
    python3 deploy/kubernetes/generate.py --check  # CI: fail if it differs

Adding a service is one line in SERVICES. The YAML is committed so that
`kubectl apply -k` needs nothing but kubectl; CI renders every overlay and
validates it strictly (deploy/kubernetes/validate.sh).
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name, port, has a database, replicas (None: one, never scaled), cpu/memory
# requests and limits, and whether it reaches providers on the internet.
SERVICES = [
    # name        port  db     replicas  req cpu  req mem  lim mem  https out
    ("gateway",    8000, False, 2,        "100m",  "64Mi",  "256Mi", False),
    ("auth",       8001, True,  2,        "100m",  "96Mi",  "384Mi", True),   # OpenID providers; Argon2 is memory-hungry
    ("users",      8002, True,  2,        "50m",   "64Mi",  "256Mi", True),   # object store for avatars
    ("realtime",   8003, False, 2,        "100m",  "96Mi",  "512Mi", False),  # ~8 KiB per idle connection
    ("chat",       8004, True,  2,        "50m",   "64Mi",  "256Mi", False),
    ("game",       8005, True,  2,        "100m",  "64Mi",  "256Mi", False),  # ~20 KiB and 0.03 % of a core per live match
    ("tournament", 8006, True,  2,        "50m",   "64Mi",  "256Mi", False),
    ("stats",      8007, True,  2,        "50m",   "64Mi",  "256Mi", False),
    ("ai",         8008, True,  None,     "100m",  "64Mi",  "256Mi", False),  # one process plays every bot match (docs/ai.md)
    ("ledger",     8009, True,  2,        "50m",   "64Mi",  "256Mi", True),   # a real chain's JSON-RPC, when configured
    ("notify",     8010, True,  2,        "50m",   "64Mi",  "256Mi", True),   # SMTP relay, push services, SMS provider
]
CLIENTS = ["ai", "game", "tournament"]  # services that call others in their own name
IMAGE = "ghcr.io/panal/panal"
VERSION = "0.1.0"  # the workspace version; CI checks they agree
UID = 65532
PRE_STOP_SECS = 5  # endpoints removal reaches every proxy before the drain starts
DRAIN_SECS = 10  # kit's http.shutdown_grace_ms
GRACE_SECS = 30  # > pre-stop + drain, with room to spare
SMTP_PORTS = [25, 465, 587]


def labels(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "panal"}


def selector(name):
    return {"app.kubernetes.io/name": name}


def container_security():
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security():
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probes(port):
    get = lambda path: {"httpGet": {"path": path, "port": "http"}}  # noqa: E731
    return {
        # Started: the process answers at all (migrations run before it
        # listens); up to 2 minutes.
        "startupProbe": {**get("/healthz"), "periodSeconds": 2, "failureThreshold": 60, "timeoutSeconds": 2},
        # Ready for traffic: its database and bus answer (what /readyz checks).
        "readinessProbe": {**get("/readyz"), "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 3},
        # Alive: the process itself only. Never a dependency: a database
        # outage must not restart every pod of every service.
        "livenessProbe": {**get("/healthz"), "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 3},
    }


def pod_spec(name, port, args, env, volumes, mounts, resources):
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECS,
        "securityContext": pod_security(),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(name)},
            }
        ],
        "containers": [
            {
                "name": name,
                "image": f"{IMAGE}:{VERSION}",
                "imagePullPolicy": "Always",
                "args": args,
                "ports": [{"name": "http", "containerPort": port}],
                "envFrom": [{"configMapRef": {"name": "panal-config"}}],
                "env": env,
                **probes(port),
                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECS}}},
                "resources": resources,
                "securityContext": container_security(),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }


def resources(cpu, mem, limit_mem):
    return {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": "1", "memory": limit_mem}}


def service_resources(name, port, db, replicas, cpu, mem, limit_mem, https):
    env = [{"name": "PANAL_PORT", "value": str(port)}, {"name": "PANAL_BUS_URL_FILE", "value": "/run/secrets/panal/bus-url"}]
    secret_items = [{"key": "bus-url", "path": "bus-url"}]
    if db:
        env.append({"name": "PANAL_DATABASE_URL_FILE", "value": "/run/secrets/panal/database-url"})
        secret_items.append({"key": f"{name}-database-url", "path": "database-url"})
    if name in ("gateway", "realtime"):
        env.append({"name": "PANAL_REDIS_URL_FILE", "value": "/run/secrets/panal/redis-url"})
        secret_items.append({"key": "redis-url", "path": "redis-url"})
    if name in CLIENTS:
        up = name.upper()
        env.append({"name": f"PANAL_CLIENTS__{up}__ID_FILE", "value": "/run/secrets/panal/client-id"})
        env.append({"name": f"PANAL_CLIENTS__{up}__SECRET_FILE", "value": "/run/secrets/panal/client-secret"})
        secret_items += [
            {"key": f"{name}-client-id", "path": "client-id"},
            {"key": f"{name}-client-secret", "path": "client-secret"},
        ]
    if name == "game":
        # Where the other game processes forward inputs for the matches this
        # pod runs: its own address.
        env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        env.append({"name": "PANAL_GAME__ADVERTISE_URL", "value": f"http://$(POD_IP):{port}"})
    volumes = [
        {"name": "secrets", "secret": {"secretName": "panal", "defaultMode": 0o440, "items": secret_items}},
        # Scratch space (avatars on the file store, mail drops): nothing here
        # must outlive the pod in this mode — use the object store and SMTP.
        {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    mounts = [
        {"name": "secrets", "mountPath": "/run/secrets/panal", "readOnly": True},
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    spec = pod_spec(name, port, ["serve", name], env, volumes, mounts, resources(cpu, mem, limit_mem))
    if name == "auth":
        # Registers the service clients (ai, game, tournament) from the
        # Secret before auth serves: at every start, idempotent — so a
        # rotated client secret takes effect with a rollout of auth, then of
        # the service.
        keys = [f"{c}-client-{w}" for c in CLIENTS for w in ("id", "secret")]
        volumes.append({"name": "clients", "secret": {"secretName": "panal", "defaultMode": 0o440,
                                                      "items": [{"key": k, "path": k} for k in keys]}})
        spec["initContainers"] = [{
            "name": "provision-clients",
            "image": spec["containers"][0]["image"],
            "imagePullPolicy": "Always",
            "args": ["auth", "clients", "provision", "--secrets-dir", "/run/secrets/clients"],
            "envFrom": [{"configMapRef": {"name": "panal-config"}}],
            "env": [{"name": "PANAL_DATABASE_URL_FILE", "value": "/run/secrets/panal/database-url"}],
            "resources": resources(cpu, mem, limit_mem),
            "securityContext": container_security(),
            "volumeMounts": [
                {"name": "secrets", "mountPath": "/run/secrets/panal", "readOnly": True},
                {"name": "clients", "mountPath": "/run/secrets/clients", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }]
    docs = []
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {
                # Left to the autoscaler where there is one (an apply must not
                # reset what it chose).
                **({"replicas": 1} if replicas is None else {}),
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector(name)},
                # One process at a time for a service that must never run twice.
                "strategy": {"type": "Recreate"} if replicas is None else {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": {"metadata": {"labels": labels(name)}, "spec": spec},
            },
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {"selector": selector(name), "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
        }
    )
    docs.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": labels(name)},
            # A single pod may be evicted (a node drain must not wait for
            # ever); with two or more, one at a time.
            "spec": {"selector": {"matchLabels": selector(name)},
                     **({"maxUnavailable": 1} if replicas is None else {"minAvailable": 1})},
        }
    )
    if replicas is not None:
        docs.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "labels": labels(name)},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": replicas,
                    "maxReplicas": 10,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
                    ],
                    # Scale down slowly: a realtime pod carries sockets.
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
                },
            }
        )
    ingress = [
        # Other Panal services (peer calls, realtime's rpc forwarding, the
        # gateway's routing).
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "panal"}}}], "ports": [{"port": port}]},
        # Prometheus, from the namespace labelled for it.
        {"from": [{"namespaceSelector": {"matchLabels": {"panal.dev/scrapes": "true"}}}], "ports": [{"port": port}]},
    ]
    if name == "gateway":
        ingress.append({"ports": [{"port": port}]})  # the public entry: from anywhere
    egress = [
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "panal"}}}],
         "ports": [{"port": p} for _, p, *_ in SERVICES]},
        # PostgreSQL, NATS, Redis: in the cluster or managed outside it.
        {"ports": [{"port": 5432}, {"port": 4222}, {"port": 6379}]},
    ]
    if https:
        egress.append({"ports": [{"port": 443}] + ([{"port": p} for p in SMTP_PORTS] if name == "notify" else [])})
    docs.append(network_policy(name, ingress, egress))
    return docs


def network_policy(name, ingress, egress):
    """What may reach the pods of `name`, and what they may reach."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def common():
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "labels": {"app.kubernetes.io/part-of": "panal"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    dns = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "dns", "labels": {"app.kubernetes.io/part-of": "panal"}},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}],
        },
    }
    return [deny, dns]


def all_in_one():
    name, port = "panal", 8000
    env = []
    volumes = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    mounts = [
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    spec = pod_spec(name, port, ["up"], env, volumes, mounts, resources("250m", "256Mi", "1Gi"))
    spec["topologySpreadConstraints"] = []
    del spec["topologySpreadConstraints"]
    # SQLite files and the embedded bus: one writer, on its own disk. Never
    # more than one replica (the Recreate of a StatefulSet of one).
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": selector(name)},
            "template": {"metadata": {"labels": labels(name)}, "spec": spec},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
                }
            ],
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {"selector": selector(name), "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {"selector": {"matchLabels": selector(name)}, "maxUnavailable": 1},
    }
    # In from anywhere to the gateway's port; out to the providers (OpenID,
    # object store, push, SMS, SMTP) when configured.
    netpol = network_policy(
        name, [{"ports": [{"port": port}]}], [{"ports": [{"port": 443}] + [{"port": p} for p in SMTP_PORTS]}]
    )
    return [sts, svc, pdb, netpol]


def dump(docs):
    # JSON is YAML; one document per resource, keys in a stable order.
    return "".join("---\n" + to_yaml(d) for d in docs)


def to_yaml(value, indent=0):
    """Block-style YAML for plain data (dicts, lists, strings, numbers, booleans)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}\n"
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}{k}: {scalar(v)}\n"
        return out
    if isinstance(value, list):
        out = ""
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                out += f"{pad}- " + body[len(pad) + 2 :]
            else:
                out += f"{pad}- {scalar(item)}\n"
        return out
    return f"{pad}{scalar(value)}\n"


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(v)


def kustomization(resources, extra=""):
    lines = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    lines += "".join(f"  - {r}\n" for r in resources)
    return lines + extra


HEADER = "# Generated by deploy/kubernetes/generate.py: edit that, then run it.\n"


def files():
    out = {}
    out["base/common/network.yaml"] = HEADER + dump(common())
    out["base/common/kustomization.yaml"] = HEADER + kustomization(["network.yaml"])
    names = []
    for s in SERVICES:
        out[f"base/services/{s[0]}.yaml"] = HEADER + dump(service_resources(*s))
        names.append(f"{s[0]}.yaml")
    out["base/services/kustomization.yaml"] = HEADER + kustomization(["../common"] + names)
    out["base/all-in-one/panal.yaml"] = HEADER + dump(all_in_one())
    out["base/all-in-one/kustomization.yaml"] = HEADER + kustomization(["../common", "panal.yaml"])
    out["overlays/distributed/namespace.yaml"] = HEADER + dump([namespace()])
    peers = "".join(f"      - PANAL_{n.upper()}_URL=http://{n}:{p}\n" for n, p, *_ in SERVICES)
    out["overlays/distributed/kustomization.yaml"] = HEADER + kustomization(
        ["namespace.yaml", "../../base/services"],
        OVERLAY.format(extra=peers, version=VERSION),
    )
    out["overlays/all-in-one/namespace.yaml"] = HEADER + dump([namespace()])
    out["overlays/all-in-one/kustomization.yaml"] = HEADER + kustomization(
        ["namespace.yaml", "../../base/all-in-one"],
        OVERLAY.format(extra="", version=VERSION),
    )
    return out


def namespace():
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "panal",
            # Every pod must meet the "restricted" Pod Security Standard.
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


# The image, and the settings every pod reads (docs/operations.md); the
# Secret `panal` is made apart (docs/deploy.md), never committed.
OVERLAY = """namespace: panal
images:
  - name: ghcr.io/panal/panal
    newTag: "{version}"
configMapGenerator:
  - name: panal-config
    literals:
      - PANAL_HOST=0.0.0.0
      - PANAL_LOG=info
      - PANAL_DATA_DIR=/data
      - PANAL_PUBLIC_URL=https://panal.example.com
{extra}"""


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    cargo = (HERE.parent.parent / "Cargo.toml").read_text()
    if f'\nversion = "{VERSION}"\n' not in cargo:
        stale.append(f"VERSION {VERSION} is not the workspace version in Cargo.toml")
    for rel, text in files().items():
        path = HERE / rel
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python3 deploy/kubernetes/generate.py):", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
