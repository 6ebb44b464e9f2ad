"""deploy/kubernetes/ against the code it deploys: the manifests parse, the ConfigMap's config.toml passes
`aigw check-config`, and ports, probe paths, mounted files, environment variables and the autoscalers' metric
agree with that config and with what a running gateway serves."""

import os
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def docs(name):
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def one(name, kind):
    found = [d for d in docs(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: {len(found)} {kind}"
    return found[0]


def config():
    return tomllib.loads(one("configmap.yaml", "ConfigMap")["data"]["config.toml"])


def env_vars_named(cfg):
    """Every environment variable the config reads."""
    names = [k["env"] for k in cfg["keys"] if "env" in k]
    names += [u["api_key_env"] for u in cfg["upstreams"] if "api_key_env" in u]
    names.append(cfg["admin"]["key_env"])
    if "redis_url_env" in cfg.get("shared", {}):
        names.append(cfg["shared"]["redis_url_env"])
    return names


def test_every_manifest_parses_and_the_kustomization_lists_files_that_exist():
    kustomization = docs("kustomization.yaml")[0]
    for res in kustomization["resources"]:
        assert (K8S / res).exists(), res
        assert docs(res), res
    assert docs("keda-scaledobject.yaml")[0]["kind"] == "ScaledObject"


def test_the_shared_redis_is_the_reference_one_with_its_password():
    cfg = config()
    secrets = {d["metadata"]["name"]: d for d in docs("secret.yaml")}
    url = urllib.parse.urlsplit(secrets["aigw-keys"]["stringData"][cfg["shared"]["redis_url_env"]])
    svc = one("redis.yaml", "Service")
    assert url.hostname == svc["metadata"]["name"]
    assert url.port == svc["spec"]["ports"][0]["port"]
    # Redis requires the password the gateway's URL carries, from a secret mounted as its config file.
    redis = one("redis.yaml", "StatefulSet")["spec"]["template"]["spec"]
    (c,) = redis["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "auth"]
    volume = {v["name"]: v for v in redis["volumes"]}[mount["name"]]
    conf = secrets[volume["secret"]["secretName"]]["stringData"]["redis.conf"]
    assert conf == f"requirepass {url.password}"
    assert c["args"][0] == mount["mountPath"] + "/redis.conf"


def test_the_reference_redis_persists_to_a_volume():
    """Keys made through the admin API live in Redis: the reference Redis keeps an append-only file on a volume
    (the gateways also write keys back to an empty Redis; this keeps the spend books too)."""
    sts = one("redis.yaml", "StatefulSet")["spec"]
    (c,) = sts["template"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    data = args[args.index("--dir") + 1]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == data]
    (claim,) = [t for t in sts["volumeClaimTemplates"] if t["metadata"]["name"] == mount["name"]]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert args[args.index("--maxmemory-policy") + 1].startswith("volatile-"), "keys (no TTL) are never evicted"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    redis = compose["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    (volume,) = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert volume.split(":")[0] in compose["volumes"]


def test_every_object_is_namespaced_and_pods_mount_no_token():
    for name in docs("kustomization.yaml")[0]["resources"]:
        for d in docs(name):
            if d["kind"] != "Namespace":
                assert d["metadata"]["namespace"] == "aigw", (name, d["metadata"]["name"])
    for name, kind in (("deployment.yaml", "Deployment"), ("redis.yaml", "StatefulSet")):
        pod = one(name, kind)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            assert "@sha256:" in c["image"], c["image"]


def test_network_policies_fence_the_admin_port_and_redis():
    policies = {d["metadata"]["name"]: d["spec"] for d in docs("networkpolicy.yaml")}
    gateway, redis = policies["aigw"], policies["aigw-redis"]
    ports = lambda rule: {p["port"] for p in rule.get("ports", [])}
    public = [r for r in gateway["ingress"] if "from" not in r]
    assert [ports(r) for r in public] == [{"grpc"}], "only the gRPC port is open to all"
    (admin,) = [r for r in gateway["ingress"] if "admin" in ports(r)]
    assert admin["from"], "the admin port has a source"
    (only,) = redis["ingress"]
    assert only["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "aigw"}}}]
    assert redis["egress"] == []


def lint_tool(name):
    tool = shutil.which(name, path=str(ROOT / ".venv-lint" / "bin"))
    assert tool, f"{name} not installed (scripts/test.sh installs it into .venv-lint)"
    return tool


def test_checkov_passes_on_the_manifests():
    done = subprocess.run([lint_tool("checkov"), "--config-file", "deploy/checkov.yaml", "-d", "deploy/kubernetes"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout, done.stdout[-2000:]


def test_hadolint_passes_on_the_dockerfile():
    done = subprocess.run([lint_tool("hadolint"), "--config", "deploy/hadolint.yaml", "Dockerfile"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_container_build_check_catches_a_file_the_image_does_not_copy(tmp_path):
    """The check the gates run on the Dockerfile (scripts/docker_build_check.py) fails when a stage leaves out a
    file the build reads: here the [[bench]] targets the manifest names, which the first stage once forgot."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY benches benches\n" in dockerfile
    broken = tmp_path / "Dockerfile"
    broken.write_text(dockerfile.replace("COPY benches benches\n", ""))
    done = subprocess.run([sys.executable, "scripts/docker_build_check.py", "--dockerfile", str(broken)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "can't find" in done.stderr and "bench" in done.stderr, done.stderr
    # A source outside the build context (or excluded by .dockerignore) fails too, before any build.
    broken.write_text(dockerfile.replace("COPY proto proto", "COPY tests/e2e tests"))
    done = subprocess.run([sys.executable, "scripts/docker_build_check.py", "--dockerfile", str(broken)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "excluded by .dockerignore" in done.stderr, done.stdout + done.stderr


def test_the_configmap_config_is_valid(tmp_path):
    text = one("configmap.yaml", "ConfigMap")["data"]["config.toml"]
    (tmp_path / "config.toml").write_text(text)
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    cfg = config()
    env = {**os.environ, **{name: "x" * 20 for name in env_vars_named(cfg)}}
    env[cfg["shared"]["redis_url_env"]] = "redis://aigw-redis:6379/0"
    done = subprocess.run([binary, "check-config", str(tmp_path / "config.toml")], capture_output=True, text=True,
                          env=env, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_deployment_agrees_with_the_config():
    cfg = config()
    dep = one("deployment.yaml", "Deployment")
    assert dep["spec"]["replicas"] >= 3
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["grpc"] == int(cfg["server"]["listen"].rsplit(":", 1)[1])
    assert ports["admin"] == int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # The pod gets SIGTERM after preStop; it must have shutdown_grace left to drain, and a little more.
    grace = int(cfg["server"]["shutdown_grace"].rstrip("s"))
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= grace + pause + 1
    # The files the config names are where the volumes put them.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["AIGW_CONFIG"] in mounts
    tls_dir = mounts["/etc/aigw/tls"]
    for path in (cfg["server"]["tls"]["cert"], cfg["server"]["tls"]["key"]):
        assert path.startswith(tls_dir["mountPath"] + "/"), path
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_secret = volumes[tls_dir["name"]]["secret"]["secretName"]
    # Every variable the config reads comes from the keys secret, mounted as files: <var>_FILE names its file.
    assert "envFrom" not in c, "secrets as files, not environment variables"
    secrets = {d["metadata"]["name"]: d for d in docs("secret.yaml")}
    keys_mount = mounts["/etc/aigw/secrets"]
    keys = secrets[volumes[keys_mount["name"]]["secret"]["secretName"]]
    for name in env_vars_named(cfg):
        assert env[f"{name}_FILE"] == f"/etc/aigw/secrets/{name}", name
        assert name in keys["stringData"], name
    assert secrets[tls_secret]["type"] == "kubernetes.io/tls"
    for path in (cfg["server"]["tls"]["cert"], cfg["server"]["tls"]["key"]):
        assert Path(path).name in secrets[tls_secret]["stringData"], path
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's user


def test_services_and_autoscalers_point_at_the_deployment(gateway):
    dep = one("deployment.yaml", "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for svc in docs("service.yaml"):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names
    public = [s for s in docs("service.yaml") if s["metadata"]["name"] == "aigw"][0]
    assert [p["port"] for p in public["spec"]["ports"]] == [443], "the admin port is never public"
    assert one("pdb.yaml", "PodDisruptionBudget")["spec"]["minAvailable"] < dep["spec"]["replicas"]
    hpa = one("hpa.yaml", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]

    keda = one("keda-scaledobject.yaml", "ScaledObject")
    assert keda["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    (prom,) = [t for t in keda["spec"]["triggers"] if t["type"] == "prometheus"]
    cfg = config()
    assert float(prom["metadata"]["threshold"]) == cfg["scaling"]["capacity_rpm_per_replica"]
    # The metric the query sums is one the gateway really exports.
    metric = prom["metadata"]["query"].split("(", 1)[1].split(")")[0].split("{")[0]
    with urllib.request.urlopen(f"http://{os.environ['AIGW_E2E_ADMIN']}/metrics", timeout=10) as resp:
        exported = resp.read().decode()
    assert f"\n{metric} " in exported, metric
