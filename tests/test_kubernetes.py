"""deploy/kubernetes: the kustomize base renders, every built-in kind validates
against the Kubernetes schemas (kubernetes-validate, bundled, offline), the
prometheus-operator resources are well formed (promtool checks the rules), the
StatefulSet gives slamon its shard index and count, the pods are hardened and
probed, and the ConfigMap's config passes `slamon check-config`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from slamon.app.shard import apply_shard
from slamon.config.loader import parse_config
from slamon.util.durations import parse_duration

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
#: 1.28 is the first release that labels StatefulSet pods with their ordinal
#: (apps.kubernetes.io/pod-index); check the oldest supported and the newest bundled
K8S_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
CRD_GROUPS = ("monitoring.coreos.com/",)
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
PORT = 9115

Doc = dict[str, Any]


def render_offline() -> list[Doc]:
    """The subset of `kustomize build` the base uses: its `resources`, in order."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    # anything more (namespace, labels, patches, generators) would need kustomize
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    assert not extra, f"kustomization.yaml uses {extra}: teach render_offline() first"
    docs: list[Doc] = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return render_offline()


def by_kind(manifests: list[Doc], kind: str) -> Doc:
    found = [d for d in manifests if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


@pytest.fixture(scope="module")
def sts(manifests: list[Doc]) -> Doc:
    return by_kind(manifests, "StatefulSet")


@pytest.fixture(scope="module")
def pod(sts: Doc) -> Doc:
    return sts["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod: Doc) -> Doc:
    (main,) = [c for c in pod["containers"] if c["name"] == "slamon"]
    return main


@pytest.fixture(scope="module")
def config_text(manifests: list[Doc]) -> str:
    return by_kind(manifests, "ConfigMap")["data"]["slamon.yaml"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything the config reads, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLAMON_", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


# -- rendering and schemas -------------------------------------------------------------------


def test_renders_every_resource(manifests: list[Doc]) -> None:
    kinds = sorted(d["kind"] for d in manifests)
    assert kinds == sorted(["ConfigMap", "Secret", "Service", "StatefulSet", "PodMonitor",
                            "PrometheusRule"])
    for doc in manifests:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "slamon", doc["kind"]


def test_kustomize_renders_the_same(manifests: list[Doc]) -> None:
    """When kustomize is here, it agrees with the offline subset above."""
    if kubectl := shutil.which("kubectl"):
        cmd = [kubectl, "kustomize", str(BASE)]
    elif kustomize := shutil.which("kustomize"):
        cmd = [kustomize, "build", str(BASE)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBECONFIG": os.devnull})
    assert res.returncode == 0, res.stderr

    def key(d: Doc) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    built = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert sorted(built, key=key) == sorted(manifests, key=key)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_against_the_schemas(manifests: list[Doc], version: str) -> None:
    checked = []
    for doc in manifests:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        # strict: an unknown (misspelt) field is an error, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(doc["kind"])
    assert sorted(checked) == ["ConfigMap", "Secret", "Service", "StatefulSet"]


def test_the_schema_check_catches_mistakes(sts: Doc) -> None:
    """The validator really looks inside the pod template."""
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] \
        = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["replicas"] = "2"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_podmonitor_scrapes_every_pod(manifests: list[Doc], sts: Doc, container: Doc) -> None:
    pm = by_kind(manifests, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(pm) == {"apiVersion", "kind", "metadata", "spec"}
    assert pm["metadata"]["name"]
    assert set(pm["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector",
                               "jobLabel", "podTargetLabels"}
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[endpoint["port"]] == PORT
    assert endpoint["path"] == "/metrics"
    interval = parse_duration(endpoint["interval"])
    assert parse_duration(endpoint["scrapeTimeout"]) <= interval


def test_prometheusrule_is_well_formed(manifests: list[Doc], tmp_path: Path) -> None:
    rule = by_kind(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["name"] and set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    for r in (r for g in groups for r in g["rules"]):
        assert ("record" in r) != ("alert" in r) and r["expr"], r
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/setup does)"
    spec = tmp_path / "rules.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    res = subprocess.run([promtool, "check", "rules", str(spec)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheusrule_is_what_slamon_rules_generates(config_text: str, tmp_path: Path) -> None:
    """The committed file is the output of the command in docs/kubernetes.md."""
    (tmp_path / "slamon.yaml").write_text(config_text)
    code = "import sys; from slamon.cli import main; sys.exit(main())"
    res = subprocess.run(
        [sys.executable, "-c", code, "rules", "-c", "slamon.yaml", "--format", "prometheusrule",
         "--label", "app.kubernetes.io/name=slamon"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=clean_env(SLAMON_SHARD_INDEX="0", SLAMON_SHARD_COUNT="1"),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == (BASE / "prometheusrule.yaml").read_text(), (
        "deploy/kubernetes/prometheusrule.yaml is stale: regenerate it (docs/kubernetes.md)"
    )


# -- the StatefulSet ------------------------------------------------------------------------


def test_statefulset_passes_shard_index_and_count(sts: Doc, container: Doc,
                                                   config_text: str) -> None:
    env = env_of(container)
    # the index: the pod's ordinal, through the downward API
    index = env["SLAMON_SHARD_INDEX"]
    assert set(index) == {"name", "valueFrom"}
    assert index["valueFrom"] == {"fieldRef": {"fieldPath": POD_INDEX}}
    # the count: a literal that must equal replicas
    replicas = sts["spec"]["replicas"]
    assert isinstance(replicas, int) and replicas >= 1
    assert env["SLAMON_SHARD_COUNT"] == {"name": "SLAMON_SHARD_COUNT", "value": str(replicas)}
    # ... and the config reads both, with no default that could hide a missing one
    shard = yaml.safe_load(config_text)["shard"]
    assert shard == {"index": "${SLAMON_SHARD_INDEX}", "count": "${SLAMON_SHARD_COUNT}"}
    # slamon reads the ConfigMap's file
    assert container["args"] == ["run", "-c", "/etc/slamon/slamon.yaml"]
    assert "command" not in container  # the image's ENTRYPOINT: slamon as PID 1


def test_each_pod_gets_its_own_share(sts: Doc, config_text: str) -> None:
    """With the env the pods get, pod i runs shard i of replicas, and together the
    pods probe every target exactly once."""
    replicas = sts["spec"]["replicas"]
    seen: list[str] = []
    for i in range(replicas):
        config = parse_config(config_text, env={"SLAMON_SHARD_INDEX": str(i),
                                                "SLAMON_SHARD_COUNT": str(replicas)})
        assert (config.shard.index, config.shard.count) == (i, replicas)
        seen += [t.id for t in apply_shard(config).targets]  # what the daemon runs
    whole = parse_config(config_text, env={"SLAMON_SHARD_INDEX": "0", "SLAMON_SHARD_COUNT": "1"})
    assert sorted(seen) == sorted(t.id for t in whole.targets)


def test_statefulset_shape(manifests: list[Doc], sts: Doc, pod: Doc, container: Doc) -> None:
    service = by_kind(manifests, "Service")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: one address per shard
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["port"] == PORT
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    env = env_of(container)
    assert env["SLAMON_LISTEN"]["value"] == f"0.0.0.0:{PORT}"
    assert {"name": "metrics", "containerPort": PORT, "protocol": "TCP"} in container["ports"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # config from the ConfigMap, read-only
    config = mounts["/etc/slamon"]
    assert config["readOnly"] is True
    assert volumes[config["name"]]["configMap"]["name"] == by_kind(
        manifests, "ConfigMap")["metadata"]["name"]
    # state on a volume claim per pod
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts["/var/lib/slamon"]["name"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    # a writable /tmp although the root file system is read-only
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_oracle_secret_is_mounted_read_only(manifests: list[Doc], pod: Doc,
                                            container: Doc) -> None:
    secret = by_kind(manifests, "Secret")
    assert set(secret["stringData"]) == {"keystore.json", "keystore.password"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (secret_volume,) = [v for v in pod["volumes"]
                        if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]]
    assert secret_volume["secret"]["defaultMode"] == 0o400
    # slamon never sees the Secret's own files (root-owned, group-readable with
    # fsGroup): an init container copies them owner-only into memory
    assert all(m["name"] != secret_volume["name"] for m in container["volumeMounts"])
    (init,) = pod["initContainers"]
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert init_mounts[secret_volume["name"]]["readOnly"] is True
    assert init["command"][:3] == ["install", "-m", "0600"]
    keys = init_mounts[next(n for n in init_mounts if n != secret_volume["name"])]
    assert volumes[keys["name"]]["emptyDir"]["medium"] == "Memory"
    assert init["command"][-1].rstrip("/") == keys["mountPath"]
    main_mount = next(m for m in container["volumeMounts"] if m["name"] == keys["name"])
    assert main_mount["readOnly"] is True
    # the paths the config's (commented) oracle block uses
    assert f"{main_mount['mountPath']}/keystore.json" in by_kind(
        manifests, "ConfigMap")["data"]["slamon.yaml"]


def test_pods_are_hardened(pod: Doc) -> None:
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001 and ctx["runAsGroup"] == 10001  # the image's user
    assert ctx["fsGroup"] == 10001
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc.get("privileged", False) is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]


def test_probes_and_shutdown(pod: Doc, container: Doc, config_text: str) -> None:
    def http(probe: str) -> tuple[str, Any]:
        get = container[probe]["httpGet"]
        return get["path"], get["port"]

    assert http("livenessProbe") == ("/healthz", "metrics")
    assert http("readinessProbe") == ("/readyz", "metrics")
    assert http("startupProbe") == ("/healthz", "metrics")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["timeoutSeconds"] < container[probe]["periodSeconds"], probe
    # SIGTERM waits for the probes in flight: the longest target timeout, plus
    # time to flush the state, must fit before the kubelet sends SIGKILL
    config = parse_config(config_text, env={"SLAMON_SHARD_INDEX": "0",
                                            "SLAMON_SHARD_COUNT": "1"})
    longest = max(t.timeout for t in config.targets)
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= longest + 20
    assert grace >= max(container[p]["timeoutSeconds"] for p in
                        ("livenessProbe", "readinessProbe", "startupProbe")) + 20


def test_resources_comment_cites_the_benchmarks() -> None:
    text = (BASE / "statefulset.yaml").read_text()
    assert "docs/benchmarks.md" in text
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    # the figures quoted next to the requests and limits are the measured ones
    for figure in ("114 MB", "582 MB", "634 MB"):
        assert figure in text and figure in bench, figure


# -- the config ------------------------------------------------------------------------------


def check_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slamon", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, env=clean_env(**env))


def test_configmap_config_passes_check_config(sts: Doc, config_text: str,
                                              tmp_path: Path) -> None:
    path = tmp_path / "slamon.yaml"
    path.write_text(config_text)
    count = str(sts["spec"]["replicas"])
    for index in range(int(count)):
        res = check_config(path, SLAMON_SHARD_INDEX=str(index), SLAMON_SHARD_COUNT=count,
                           SLAMON_LISTEN=f"0.0.0.0:{PORT}")
        assert res.returncode == 0, res.stderr
        assert ": OK:" in res.stdout
    # a pod without its index must not start as some other shard
    res = check_config(path, SLAMON_SHARD_COUNT=count)
    assert res.returncode == 2 and "SLAMON_SHARD_INDEX is not set" in res.stderr
    res = check_config(path, SLAMON_SHARD_INDEX=count, SLAMON_SHARD_COUNT=count)
    assert res.returncode == 2 and "shard.index" in res.stderr


def test_commented_oracle_block_is_valid(config_text: str, tmp_path: Path) -> None:
    """Uncommenting the oracle block (and adding an SLA, as its comment says) gives a
    valid config."""
    text, n = re.subn(r"^#(oracle:|  )", r"\1", config_text, flags=re.MULTILINE)
    assert n >= 5
    text += ("slas:\n  - id: www-monthly\n    slo: www-availability\n"
             "    period: {kind: monthly, timezone: UTC}\n")
    path = tmp_path / "slamon.yaml"
    path.write_text(text)
    res = check_config(path, SLAMON_SHARD_INDEX="0", SLAMON_SHARD_COUNT="2")
    assert res.returncode == 0, res.stderr
    assert "1 SLA" in res.stdout
