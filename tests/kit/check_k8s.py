#!/usr/bin/env python3
"""Structural check of packaging/kubernetes: every YAML parses, and the
fields operations rely on hold (probes, drain grace, security context,
HA shape, digest-pinned image, NetworkPolicy egress, PDB, ServiceMonitor,
PrometheusRule == the shipped alert rules). Each overlay is rendered the
way kustomize would for the parts checked (resources, namespace,
configMapGenerator, images).
Usage: check_k8s.py SRC"""
import os
import re
import sys

import yaml

src = sys.argv[1]
k8s = os.path.join(src, "packaging", "kubernetes")
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def get(d, *path, default=None):
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and p < len(d):
            d = d[p]
        else:
            return default
    return d


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# Every YAML file parses and every object names itself.
for root, _, files in os.walk(k8s):
    for name in sorted(files):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = os.path.join(root, name)
        try:
            docs = load_all(path)
        except yaml.YAMLError as e:
            err(path, f"not YAML: {e}")
            continue
        for d in docs:
            if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
                err(path, "a document without apiVersion/kind")
            elif d["kind"] != "Kustomization" and not get(d, "metadata", "name"):
                err(path, f"{d['kind']} without metadata.name")


def build(kdir):
    """The objects of a kustomization (resources, namespace, images,
    configMapGenerator), recursively."""
    kpath = os.path.join(kdir, "kustomization.yaml")
    kust = load_all(kpath)[0]
    objs = []
    for r in kust.get("resources", []):
        p = os.path.normpath(os.path.join(kdir, r))
        if os.path.isdir(p):
            objs += build(p)
        elif os.path.isfile(p):
            objs += load_all(p)
        else:
            err(kpath, f"resource {r} does not exist")
    for g in kust.get("configMapGenerator", []):
        data = {}
        for f in g.get("files", []):
            key, _, fname = f.partition("=")
            fname = fname or key
            fp = os.path.join(kdir, fname)
            if not os.path.isfile(fp):
                err(kpath, f"configMapGenerator file {fname} does not exist")
                continue
            with open(fp) as fh:
                data[os.path.basename(key)] = fh.read()
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": g["name"]}, "data": data})
    for img in kust.get("images", []):
        for o in objs:
            for c in get(o, "spec", "template", "spec", "containers", default=[]) or []:
                if c.get("image", "").split("@")[0].split(":")[0] == img["name"]:
                    ref = img.get("newName", img["name"])
                    if "digest" in img:
                        ref += "@" + img["digest"]
                    elif "newTag" in img:
                        ref += ":" + img["newTag"]
                    c["image"] = ref
    if "namespace" in kust:
        for o in objs:
            o.setdefault("metadata", {})["namespace"] = kust["namespace"]
    return objs


def ini_value(text, section, key):
    sec = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            sec = line.strip("[]")
        elif sec == section and re.match(rf"{re.escape(key)}\s*=", line):
            return re.sub(r"\s+;.*$", "", line.split("=", 1)[1]).strip()
    return None


def check_overlay(env):
    where = f"overlays/{env}"
    objs = build(os.path.join(k8s, "overlays", env))
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    for kind in ["Deployment", "Service", "ServiceAccount", "NetworkPolicy",
                 "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ConfigMap"]:
        if len(by_kind.get(kind, [])) != 1:
            err(where, f"expected one {kind}, found {len(by_kind.get(kind, []))}")
            return
    dep = by_kind["Deployment"][0]
    cm = by_kind["ConfigMap"][0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    d = f"{where}: Deployment"
    if not matches(get(spec, "selector", "matchLabels"), labels):
        err(d, "selector does not match the pod labels")
    if spec.get("replicas") != 2:
        err(d, f"replicas {spec.get('replicas')}, want 2")
    if get(spec, "strategy", "type") != "RollingUpdate" or \
            get(spec, "strategy", "rollingUpdate", "maxUnavailable") != 1:
        err(d, "strategy must be RollingUpdate with maxUnavailable 1")
    if pod.get("automountServiceAccountToken") is not False:
        err(d, "automountServiceAccountToken must be false")
    sa = by_kind["ServiceAccount"][0]
    if pod.get("serviceAccountName") != sa["metadata"]["name"] or \
            sa.get("automountServiceAccountToken") is not False:
        err(d, "ServiceAccount must be used and not mount a token")
    psc = pod.get("securityContext", {})
    if get(psc, "seccompProfile", "type") != "RuntimeDefault":
        err(d, "pod seccompProfile must be RuntimeDefault")
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        err(d, "pod must run as a non-root user")
    if len(pod["containers"]) != 1:
        err(d, "one container expected")
        return
    c = pod["containers"][0]
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        err(d, "readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        err(d, "allowPrivilegeEscalation must be false")
    if get(csc, "capabilities", "drop") != ["ALL"]:
        err(d, "capabilities must drop ALL")
    if csc.get("privileged"):
        err(d, "must not be privileged")
    if not re.fullmatch(r"[a-z0-9.\-/:]+@sha256:[0-9a-f]{64}", c.get("image", "")):
        err(d, f"image not referenced by digest: {c.get('image')}")
    if get(c, "resources", "requests") != {"cpu": "500m", "memory": "512Mi"}:
        err(d, f"resources.requests {get(c, 'resources', 'requests')}, want 500m/512Mi")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    env = {e["name"]: e for e in c.get("env", [])}
    listen = get(env, "ROUTERD_ADMIN_LISTEN", "value", default="")
    if not listen.endswith(f":{ports.get('admin')}") or not listen.startswith("0.0.0.0:"):
        err(d, f"ROUTERD_ADMIN_LISTEN {listen!r} does not serve the admin port to probes")
    for probe, path in [("readinessProbe", "/healthz"), ("livenessProbe", "/livez"),
                        ("startupProbe", None)]:
        p = c.get(probe)
        if not p:
            err(d, f"no {probe}")
            continue
        if path and get(p, "httpGet", "path") != path:
            err(d, f"{probe} path {get(p, 'httpGet', 'path')}, want {path}")
        if get(p, "httpGet", "port") not in ports and get(p, "httpGet", "port") not in ports.values():
            err(d, f"{probe} port is not a container port")
    store_ref = get(env, "ROUTERD_STORE_URL", "valueFrom", "secretKeyRef")
    if not store_ref or not store_ref.get("name") or store_ref.get("optional"):
        err(d, "ROUTERD_STORE_URL must come from a Secret (not optional)")
    # The manifest: mounted from the generated ConfigMap, named by -c.
    args = c.get("args", [])
    cfg = args[args.index("-c") + 1] if "-c" in args else ""
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for m in mounts.values():
        if m["name"] not in vols:
            err(d, f"volumeMount {m['name']} has no volume")
    cfgdir, cfgname = os.path.split(cfg)
    vol = vols.get(get(mounts, cfgdir, "name", default=""), {})
    if get(vol, "configMap", "name") != cm["metadata"]["name"] or cfgname not in cm["data"]:
        err(d, f"-c {cfg} is not a file of the generated ConfigMap")
        return
    manifest = cm["data"][cfgname]
    # Every ${VAR} without a default is set.
    for var in re.findall(r"\$\{([A-Z0-9_]+)\}", manifest):
        if var not in env:
            err(d, f"manifest needs ${{{var}}} but the container does not set it")
    state = get(env, "ROUTERD_STATE_DIR", "value")
    if state not in mounts or mounts[state].get("readOnly"):
        err(d, "state_dir must be a writable volume")
    if "/tmp" not in mounts:
        err(d, "/tmp must be a volume on a read-only root")
    drain = int(ini_value(manifest, "router", "drain_timeout_s") or 30)
    if not pod.get("terminationGracePeriodSeconds", 30) > drain:
        err(d, f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} "
               f"not above drain_timeout_s {drain}")
    if ini_value(manifest, "router", "store") != "postgresql":
        err(d, "two replicas need the shared store: [router] store = postgresql")
    # Service, PDB, NetworkPolicy, ServiceMonitor select these pods.
    svc = by_kind["Service"][0]
    if not matches(get(svc, "spec", "selector"), labels):
        err(where, "Service selector does not match the pods")
    svc_ports = {p["name"]: p for p in get(svc, "spec", "ports", default=[])}
    if get(svc_ports, "admin", "targetPort") not in ("admin", ports.get("admin")):
        err(where, "Service admin port does not target the container's admin port")
    pdb = by_kind["PodDisruptionBudget"][0]
    if not matches(get(pdb, "spec", "selector", "matchLabels"), labels):
        err(where, "PodDisruptionBudget selector does not match the pods")
    if get(pdb, "spec", "maxUnavailable") != 1 and get(pdb, "spec", "minAvailable") != 1:
        err(where, "PodDisruptionBudget must keep one replica")
    np = by_kind["NetworkPolicy"][0]
    if not matches(get(np, "spec", "podSelector", "matchLabels"), labels):
        err(where, "NetworkPolicy does not select the pods")
    if "Egress" not in get(np, "spec", "policyTypes", default=[]):
        err(where, "NetworkPolicy does not limit egress")
    egress = get(np, "spec", "egress", default=[])
    eports = [(p.get("port"), p.get("protocol", "TCP")) for r in egress for p in r.get("ports", [])]
    for need in [(53, "UDP"), (443, "TCP"), (5432, "TCP")]:
        if need not in eports:
            err(where, f"NetworkPolicy egress lacks {need[0]}/{need[1]}")
    if not any("ipBlock" in t for r in egress for t in r.get("to", [])):
        err(where, "NetworkPolicy has no egress to the Bot API's addresses")
    for r in egress:
        if not r.get("to"):
            err(where, "an egress rule without 'to' allows everything")
    sm = by_kind["ServiceMonitor"][0]
    if not matches(get(sm, "spec", "selector", "matchLabels"), svc["metadata"].get("labels", {})):
        err(where, "ServiceMonitor does not select the Service")
    for ep in get(sm, "spec", "endpoints", default=[]):
        if ep.get("port") not in svc_ports or ep.get("path", "/metrics") != "/metrics":
            err(where, "ServiceMonitor endpoint is not the admin port's /metrics")
    pr = by_kind["PrometheusRule"][0]
    with open(os.path.join(src, "packaging", "prometheus", "routerd-alerts.yml")) as f:
        shipped = yaml.safe_load(f)["groups"]
    if get(pr, "spec", "groups") != shipped:
        err(where, "PrometheusRule differs from packaging/prometheus/routerd-alerts.yml "
                   "(run packaging/kubernetes/generate.sh)")


for env in ["staging", "production"]:
    check_overlay(env)

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("kubernetes manifests: ok")
